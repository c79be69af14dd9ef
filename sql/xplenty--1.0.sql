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
 *   waiting     waits for the job of the request named by depends_on to
 *               complete before it is queued
 *
 * Once a request is submitted, the worker follows its job until the job
 * ends, and keeps what the API says of it in the job_* columns.
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
		CHECK (status IN ('waiting', 'queued', 'submitting', 'checking',
						  'submitted', 'failed', 'unknown')),
	depends_on bigint
		REFERENCES @extschema@.xplenty_queue (id) ON DELETE SET NULL,
	attempts int NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	first_sent_at timestamptz,
	last_sent_at timestamptz,
	resent_after_check boolean NOT NULL DEFAULT false,
	last_error text,
	job_id bigint,
	job jsonb,
	submitted_at timestamptz,
	job_status text,
	job_progress double precision,
	job_errors text,
	job_finished_at timestamptz,
	next_poll_at timestamptz,
	polls int NOT NULL DEFAULT 0,
	last_poll_error text,
	checks int NOT NULL DEFAULT 0,
	enqueued_by name NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	CHECK ((status = 'submitted') = (job_id IS NOT NULL))
);

COMMENT ON TABLE @extschema@.xplenty_queue IS
'requests to run Xplenty jobs, sent by the xplenty background worker';

-- What the worker looks for: due requests, oldest first, one index for
-- each status it claims, so that a claim is a short ordered index scan
-- whatever the statistics say of a queue that fills and drains fast.
CREATE INDEX xplenty_queue_due_idx
	ON @extschema@.xplenty_queue (next_attempt_at, id)
	WHERE status = 'queued';
CREATE INDEX xplenty_queue_due_check_idx
	ON @extschema@.xplenty_queue (next_attempt_at, id)
	WHERE status = 'checking';

-- For finding a request by its job; the worker also looks here before it
-- adopts a job found by a check, so that no job is adopted twice.  (Not a
-- unique index: a job ID the API repeats must not stop the worker.)
--
-- No update of a row can be HOT: every change of state changes status,
-- which the partial indexes' predicates name.  So each update adds an
-- entry to every index whose predicate the new row version meets.  The
-- indexes of job_id and dedup_key leave out the rows where those are
-- null (a request has no job_id until it is submitted, and most have no
-- dedup_key), which saves an entry at each enqueue, claim and retry.
CREATE INDEX xplenty_queue_job_id_idx
	ON @extschema@.xplenty_queue (job_id)
	WHERE job_id IS NOT NULL;

-- At most one pending request per deduplication key.
CREATE UNIQUE INDEX xplenty_queue_dedup_key_idx
	ON @extschema@.xplenty_queue (dedup_key)
	WHERE dedup_key IS NOT NULL
	AND status IN ('waiting', 'queued', 'submitting', 'checking');

-- Requests being sent, by package: a check must not adopt a job while an
-- identical request is in flight (see xplenty_queue_twin_submitting).
CREATE INDEX xplenty_queue_submitting_idx
	ON @extschema@.xplenty_queue (package_id)
	WHERE status = 'submitting';

-- Jobs the worker follows, by when they are next due to be asked about.
CREATE INDEX xplenty_queue_poll_idx
	ON @extschema@.xplenty_queue (next_poll_at)
	WHERE status = 'submitted' AND job_finished_at IS NULL;

-- Requests waiting for another's job.
CREATE INDEX xplenty_queue_depends_on_idx
	ON @extschema@.xplenty_queue (depends_on)
	WHERE status = 'waiting';

-- For the clean-up of old finished requests.
CREATE INDEX xplenty_queue_finished_idx
	ON @extschema@.xplenty_queue (updated_at)
	WHERE status = 'failed' OR job_finished_at IS NOT NULL;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.xplenty_queue', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.xplenty_queue_id_seq',
										   '');

REVOKE ALL ON @extschema@.xplenty_queue FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.xplenty_queue_id_seq FROM PUBLIC;

-- A role granted SELECT sees the requests it queued, and those of the
-- roles whose privileges it has; the owner (and so the worker, and the
-- enqueue functions) and superusers see all.  Variables can be business
-- data, so one team's requests are not another's to read.
ALTER TABLE @extschema@.xplenty_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY xplenty_queue_own_requests ON @extschema@.xplenty_queue
	FOR SELECT
	USING (enqueued_by = current_user
		   OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
					  WHERE r.rolname = enqueued_by
					  AND pg_catalog.pg_has_role(current_user, r.oid,
												 'USAGE')));

CREATE FUNCTION @extschema@.xplenty_enqueue_job(
	cluster int,
	package int,
	variables jsonb DEFAULT NULL,
	dynamic_variables jsonb DEFAULT NULL,
	dedup_key text DEFAULT NULL,
	depends_on bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'xplenty_enqueue_job'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION
	@extschema@.xplenty_enqueue_job(int, int, jsonb, jsonb, text, bigint) IS
'queue a request to run an Xplenty package, sent once the transaction commits (and, with depends_on, once that request''s job has completed)';

REVOKE ALL ON FUNCTION
	@extschema@.xplenty_enqueue_job(int, int, jsonb, jsonb, text, bigint)
	FROM PUBLIC;

CREATE FUNCTION @extschema@.xplenty_enqueue_job_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'xplenty_enqueue_job_trigger'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.xplenty_enqueue_job_trigger() IS
'trigger that queues a job run; arguments: cluster, package [, variables [, dynamic_variables [, dedup_key]]]';

REVOKE ALL ON FUNCTION @extschema@.xplenty_enqueue_job_trigger()
	FROM PUBLIC;

/*
 * Following jobs: what the API says of them now.
 */
CREATE FUNCTION @extschema@.xplenty_job(job_id bigint)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'xplenty_job'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.xplenty_job(bigint) IS
'the Xplenty job as the API has it now';

CREATE FUNCTION @extschema@.xplenty_stop_job(job_id bigint)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'xplenty_stop_job'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.xplenty_stop_job(bigint) IS
'terminate an Xplenty job; the API answers with the job, pending_stoppage';

CREATE FUNCTION @extschema@.xplenty_job_log(job_id bigint)
RETURNS text
AS 'MODULE_PATHNAME', 'xplenty_job_log'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.xplenty_job_log(bigint) IS
'the log of an Xplenty job';

CREATE FUNCTION @extschema@.xplenty_jobs(
	status text DEFAULT 'all',
	package int DEFAULT NULL,
	since timestamptz DEFAULT NULL,
	max_jobs int DEFAULT 100,
	sort text DEFAULT 'created',
	direction text DEFAULT 'desc')
RETURNS TABLE (
	id bigint,
	status text,
	package_id int,
	cluster_id int,
	progress double precision,
	created_at timestamptz,
	started_at timestamptz,
	updated_at timestamptz,
	completed_at timestamptz,
	failed_at timestamptz,
	errors text,
	job jsonb)
AS 'MODULE_PATHNAME', 'xplenty_jobs'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION
	@extschema@.xplenty_jobs(text, int, timestamptz, int, text, text) IS
'the account''s Xplenty jobs, read page by page up to max_jobs';

REVOKE ALL ON FUNCTION @extschema@.xplenty_job(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.xplenty_stop_job(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.xplenty_job_log(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION
	@extschema@.xplenty_jobs(text, int, timestamptz, int, text, text)
	FROM PUBLIC;

/*
 * Waiting, in a script or a test, for a queued request's job to end.
 *
 * A procedure, not a function: it commits after each look at the row, so
 * that while it sleeps between looks the session holds no snapshot.  One
 * snapshot held for the whole wait would keep every row version the worker
 * leaves behind from being pruned, and slow each of its claims.
 */
CREATE PROCEDURE @extschema@.xplenty_wait(
	queue_id bigint,
	timeout interval DEFAULT '1 hour',
	INOUT status text DEFAULT NULL,
	INOUT job_status text DEFAULT NULL)
AS 'MODULE_PATHNAME', 'xplenty_wait'
LANGUAGE C;

COMMENT ON PROCEDURE
	@extschema@.xplenty_wait(bigint, interval, text, text) IS
'wait until a queued request''s job has ended (or the request failed), and return the status of both; run it with CALL outside a transaction block';

REVOKE ALL ON PROCEDURE
	@extschema@.xplenty_wait(bigint, interval, text, text) FROM PUBLIC;
