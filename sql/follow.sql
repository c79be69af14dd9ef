--
-- Following jobs after launch: xplenty_job(), xplenty_stop_job(),
-- xplenty_jobs(), xplenty_job_log(), queue rows that follow their job,
-- dependent requests and xplenty_wait().  The mock API moves each job
-- from idle to running (0.2 s) to completed (1 s) unless told otherwise;
-- the worker polls every 100 ms to 1 s (see test/lib.sh).
--
CREATE EXTENSION xplenty;
\! test/mock/mockctl reset
\set SHOW_CONTEXT never

--
-- One job, as the API has it now.
--
SELECT xplenty_run_job(52, 700) ->> 'id' AS job_id \gset
SELECT job->>'status' AS status, job->'package_id' AS package_id
FROM xplenty_job(:job_id) AS job;
SELECT pg_sleep(1.2);
SELECT job->>'status' AS status, job->'progress' AS progress,
	   job->>'completed_at' IS NOT NULL AS has_completed_at
FROM xplenty_job(:job_id) AS job;
SELECT xplenty_job(0);
SELECT xplenty_job(987654);
SELECT xplenty_job(NULL) IS NULL AS null_in_null_out;

-- Its log.
SELECT length(xplenty_job_log(:job_id)) > 0 AS has_log;
SELECT xplenty_job_log(987654);

--
-- Stopping a job: the API answers pending_stoppage, and it later stops.
--
\! test/mock/mockctl config '{"package_timelines": {"701": [["idle", 0], ["running", 0.1], ["completed", 60]]}}'
SELECT xplenty_run_job(52, 701) ->> 'id' AS job_id \gset
SELECT xplenty_stop_job(:job_id) ->> 'status' AS status;
SELECT pg_sleep(0.8);
SELECT xplenty_job(:job_id) ->> 'status' AS status;
-- A job that has ended cannot be stopped.
SELECT xplenty_stop_job(:job_id);

--
-- The account's jobs as rows, read page by page (100 a page).
--
SELECT count(xplenty_run_job(52, 702, jsonb_build_object('N', i::text)))
FROM generate_series(1, 230) AS i;
\! test/mock/mockctl reset --keep-jobs
SELECT count(*) AS jobs, count(DISTINCT id) AS distinct_ids,
	   min(package_id) AS package_id, bool_and(job ? 'url') AS whole_jobs
FROM xplenty_jobs(package => 702, max_jobs => 1000);
\set log `test/mock/mockctl requests`
SELECT r->>'query' AS query FROM jsonb_array_elements(:'log') AS r;
SELECT count(*) FROM xplenty_jobs(package => 702, max_jobs => 150);
SELECT id > 0 AS id, status, package_id, cluster_id, created_at IS NOT NULL AS created
FROM xplenty_jobs(package => 700);
SELECT count(*) AS recent FROM xplenty_jobs(since => now() - interval '1 hour',
											 max_jobs => 5);
SELECT * FROM xplenty_jobs(status => 'finished');
SELECT * FROM xplenty_jobs(sort => 'name');
SELECT * FROM xplenty_jobs(max_jobs => 0);
SELECT * FROM xplenty_jobs(package => -1);

--
-- A queued request follows its job to its end: completed, failed or
-- stopped.  CALL xplenty_wait() returns once the job has ended.
--
\! test/mock/mockctl config '{"package_timelines": {"711": [["idle", 0], ["running", 0.2], ["failed", 0.6]], "712": [["idle", 0], ["running", 0.1], ["completed", 60]]}}'
SELECT xplenty_enqueue_job(52, 710) AS completes,
	   xplenty_enqueue_job(52, 711) AS fails,
	   xplenty_enqueue_job(52, 712) AS stopped \gset
CALL xplenty_wait(:completes, '20 s');
SELECT status, job_status, job_progress, job_finished_at IS NOT NULL AS ended,
	   polls > 1 AS polled
FROM xplenty_queue WHERE id = :completes;
CALL xplenty_wait(:fails, '20 s');
SELECT status, job_status, job_errors LIKE '%failed%' AS has_errors,
	   job_finished_at IS NOT NULL AS ended
FROM xplenty_queue WHERE id = :fails;
DO $$
BEGIN
	FOR i IN 1..100 LOOP
		EXIT WHEN (SELECT job_status FROM xplenty_queue
				   WHERE package_id = 712) = 'running';
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT xplenty_stop_job(job_id) ->> 'status' AS stopping
FROM xplenty_queue WHERE id = :stopped;
CALL xplenty_wait(:stopped, '20 s');
SELECT status, job_status, job_finished_at IS NOT NULL AS ended
FROM xplenty_queue WHERE id = :stopped;

-- A poll that fails is tried again later: it never marks the job failed.
\! test/mock/mockctl faults '{"method": "GET", "path": "^/jobs/[0-9]+$", "status": 503, "times": 3}'
SELECT xplenty_enqueue_job(52, 713) AS flaky \gset
CALL xplenty_wait(:flaky, '20 s');
SELECT status, job_status, last_poll_error IS NULL AS recovered
FROM xplenty_queue WHERE id = :flaky;
\set stats `test/mock/mockctl stats`
SELECT (:'stats'::jsonb ->> 'faults_applied')::int >= 3 AS polls_failed;

-- xplenty_wait answers to a cancel (here, statement_timeout).
\! test/mock/mockctl config '{"package_timelines": {"714": [["idle", 0], ["running", 0.1], ["completed", 60]]}}'
SELECT xplenty_enqueue_job(52, 714) AS long_two \gset
SET statement_timeout = '300ms';
CALL xplenty_wait(:long_two);
RESET statement_timeout;
DO $$
BEGIN
	FOR i IN 1..100 LOOP
		EXIT WHEN (SELECT job_status FROM xplenty_queue
				   WHERE package_id = 714) = 'running';
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT xplenty_stop_job(job_id) ->> 'status' AS stopping
FROM xplenty_queue WHERE id = :long_two;

-- While it sleeps between looks, xplenty_wait holds no snapshot: it
-- commits after each look, so the row versions the worker leaves behind
-- can be cleaned up meanwhile.  Another session (over dblink) waits for a
-- long job; once a transaction has committed here, its backend_xmin, when
-- it has one at all, must be newer than that transaction.
CREATE EXTENSION dblink;
\! test/mock/mockctl config '{"package_timelines": {"715": [["idle", 0], ["running", 0.1], ["completed", 60]]}}'
SELECT xplenty_enqueue_job(52, 715) AS long_three \gset
SELECT dblink_connect('waiter',
	format('dbname=%s port=%s host=%s', current_database(),
		   current_setting('port'),
		   split_part(current_setting('unix_socket_directories'), ',', 1)));
SELECT dblink_send_query('waiter',
	format('CALL xplenty_wait(%s, %L)', :long_three, '20 s'));
SELECT pg_sleep(0.3);
SELECT pg_current_xact_id()::text::bigint AS committed \gset
SELECT pg_sleep(0.3);
CREATE TEMP TABLE waiter_xmin (held xid);
DO $$
BEGIN
	FOR i IN 1..20 LOOP
		PERFORM pg_stat_clear_snapshot();
		INSERT INTO waiter_xmin
		SELECT backend_xmin FROM pg_stat_activity
		WHERE query LIKE 'CALL xplenty_wait(%' AND pid <> pg_backend_pid();
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT count(*) AS samples,
	   count(*) FILTER (WHERE held::text::bigint <= :committed)
		AS older_than_the_commit,
	   count(*) FILTER (WHERE held IS NULL) >= 15 AS mostly_none
FROM waiter_xmin;
SELECT xplenty_stop_job(job_id) ->> 'status' AS stopping
FROM xplenty_queue WHERE id = :long_three;
SELECT * FROM dblink_get_result('waiter') AS r(status text, job_status text);
SELECT dblink_disconnect('waiter');
DROP EXTENSION dblink;

-- xplenty_wait's own errors.
CALL xplenty_wait(987654);
SELECT xplenty_enqueue_job(52, 712) AS long_one \gset
CALL xplenty_wait(:long_one, '300 ms');
BEGIN;
CALL xplenty_wait(:long_one);
ROLLBACK;
SELECT xplenty_stop_job(job_id) ->> 'status' AS stopping
FROM xplenty_queue WHERE id = :long_one;
CALL xplenty_wait(:long_one, '20 s');

--
-- Dependent requests: a chain written in SQL runs in order ...
--
SELECT xplenty_enqueue_job(52, 720, '{"STEP": "extract"}') AS extract \gset
SELECT xplenty_enqueue_job(52, 721, '{"STEP": "transform"}',
						   depends_on => :extract) AS transform \gset
SELECT xplenty_enqueue_job(52, 722, '{"STEP": "load"}',
						   depends_on => :transform) AS load \gset
SELECT status FROM xplenty_queue WHERE id = :load;
CALL xplenty_wait(:load, '30 s');
SELECT e.job_finished_at <= t.submitted_at AS transform_after_extract,
	   t.job_finished_at <= l.submitted_at AS load_after_transform
FROM xplenty_queue e, xplenty_queue t, xplenty_queue l
WHERE e.id = :extract AND t.id = :transform AND l.id = :load;

-- ... and when its middle step fails, the rest is not run.
\! test/mock/mockctl config '{"package_timelines": {"731": [["idle", 0], ["running", 0.1], ["failed", 0.3]]}}'
SELECT xplenty_enqueue_job(52, 730) AS extract \gset
SELECT xplenty_enqueue_job(52, 731, depends_on => :extract) AS transform \gset
SELECT xplenty_enqueue_job(52, 732, depends_on => :transform) AS load \gset
CALL xplenty_wait(:load, '30 s');
SELECT status, job_id IS NULL AS never_sent,
	   regexp_replace(last_error, '\d+', 'N', 'g') AS last_error
FROM xplenty_queue WHERE id = :load;
SELECT job_status FROM xplenty_queue WHERE id = :transform;
\set stats `test/mock/mockctl stats`
SELECT (:'stats'::jsonb -> 'posts_by_package' -> '732') IS NULL AS load_never_posted;

-- A dependency must exist.
SELECT xplenty_enqueue_job(52, 740, depends_on => 987654);
SELECT xplenty_enqueue_job(52, 740, depends_on => 0);

--
-- Polling backs off as a job runs longer, and stays within its budget.
--
\! test/mock/mockctl reset --keep-jobs
\! test/mock/mockctl config '{"package_timelines": {"750": [["idle", 0], ["running", 0.1], ["completed", 4]]}}'
SELECT xplenty_enqueue_job(52, 750) AS id \gset
-- The job runs 4 s: polled every 100 ms that would be 40 polls; backing
-- off to a tenth of its age once it is older than 1 s makes it about 25.
CALL xplenty_wait(:id, '20 s');
SELECT job_status, polls BETWEEN 10 AND 34 AS polls_backed_off
FROM xplenty_queue WHERE id = :id;

ALTER SYSTEM SET xplenty.poll_budget = 3;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\! test/mock/mockctl reset --keep-jobs
\! test/mock/mockctl config '{"package_timelines": {"751": [["idle", 0], ["running", 0.1], ["completed", 60]]}}'
SELECT xplenty_enqueue_job(52, 751) AS id \gset
SELECT pg_sleep(3);
SELECT status, job_status, polls <= 3 AS within_budget
FROM xplenty_queue WHERE id = :id;
\set log `test/mock/mockctl requests`
SELECT count(*) FILTER (WHERE r->>'method' = 'GET') <= 3 AS gets_within_budget
FROM jsonb_array_elements(:'log') AS r;
ALTER SYSTEM RESET xplenty.poll_budget;
SELECT pg_reload_conf();

DROP EXTENSION xplenty;
