/* sql/xplenty--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION xplenty" to load this file. \quit

CREATE FUNCTION @extschema@.xplenty_run_job(
	cluster int,
	package int,
	variables jsonb DEFAULT NULL,
	dynamic_variables jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'xplenty_run_job'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.xplenty_run_job(int, int, jsonb, jsonb) IS
'run an Xplenty package on a cluster now, and return the job the API created';

-- Launching a job costs money: nobody may do it until granted.
REVOKE ALL ON FUNCTION @extschema@.xplenty_run_job(int, int, jsonb, jsonb)
	FROM PUBLIC;

/*
 * The queue: one row per request to run a job, sent by the background
 * worker after the enqueuing transaction commits.
 *
 * status:
 *   queued      waiting to be sent (again, after a failure that is safe to
 *               retry)
 *   submitting  committed just before the request was sent: it is being,
 *               or may have been, sent
 *   checking    a send may have reached the API without its answer coming
 *               back; the worker lists the package's jobs to find out
 *               before it sends anything again
 *   submitted   the API created the job: job_id and job are set
 *   failed      given up: an error that would recur, or attempts used up
 *   unknown     the API could not be asked whether the job was created;
 *               nothing more will be sent until someone looks
 */
CREATE TABLE @extschema@.xplenty_queue (
	id bigserial PRIMARY KEY,
	cluster_id int NOT NULL CHECK (cluster_id > 0),
	package_id int NOT NULL CHECK (package_id > 0),
	variables jsonb CHECK (jsonb_typeof(variables) = 'object'),
	dynamic_variables jsonb
		CHECK (jsonb_typeof(dynamic_variables) = 'object'),
	dedup_key text,
	status text NOT NULL DEFAULT 'queued'
		CHECK (status IN ('queued', 'submitting', 'checking', 'submitted',
						  'failed', 'unknown')),
	attempts int NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	first_sent_at timestamptz,
	resent_after_check boolean NOT NULL DEFAULT false,
	last_error text,
	job_id bigint,
	job jsonb,
	checks int NOT NULL DEFAULT 0,
	enqueued_by name NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	CHECK ((status = 'submitted') = (job_id IS NOT NULL))
);

COMMENT ON TABLE @extschema@.xplenty_queue IS
'requests to run Xplenty jobs, sent by the xplenty background worker';

-- What the worker looks for: due requests, oldest first.
CREATE INDEX xplenty_queue_due_idx
	ON @extschema@.xplenty_queue (next_attempt_at, id)
	WHERE status IN ('queued', 'checking');

-- For finding a request by its job; the worker also looks here before it
-- adopts a job found by a check, so that no job is adopted twice.  (Not a
-- unique index: a job ID the API repeats must not stop the worker.)
CREATE INDEX xplenty_queue_job_id_idx
	ON @extschema@.xplenty_queue (job_id);

-- At most one pending request per deduplication key.
CREATE UNIQUE INDEX xplenty_queue_dedup_key_idx
	ON @extschema@.xplenty_queue (dedup_key)
	WHERE status IN ('queued', 'submitting', 'checking');

-- For the clean-up of old finished requests.
CREATE INDEX xplenty_queue_finished_idx
	ON @extschema@.xplenty_queue (updated_at)
	WHERE status IN ('submitted', 'failed');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.xplenty_queue', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.xplenty_queue_id_seq',
										   '');

REVOKE ALL ON @extschema@.xplenty_queue FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.xplenty_queue_id_seq FROM PUBLIC;

CREATE FUNCTION @extschema@.xplenty_enqueue_job(
	cluster int,
	package int,
	variables jsonb DEFAULT NULL,
	dynamic_variables jsonb DEFAULT NULL,
	dedup_key text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'xplenty_enqueue_job'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION
	@extschema@.xplenty_enqueue_job(int, int, jsonb, jsonb, text) IS
'queue a request to run an Xplenty package, sent once the transaction commits';

REVOKE ALL ON FUNCTION
	@extschema@.xplenty_enqueue_job(int, int, jsonb, jsonb, text)
	FROM PUBLIC;

CREATE FUNCTION @extschema@.xplenty_enqueue_job_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'xplenty_enqueue_job_trigger'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.xplenty_enqueue_job_trigger() IS
'trigger that queues a job run; arguments: cluster, package [, variables [, dynamic_variables [, dedup_key]]]';

REVOKE ALL ON FUNCTION @extschema@.xplenty_enqueue_job_trigger()
	FROM PUBLIC;
