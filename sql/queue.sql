--
-- The queue: xplenty_enqueue_job(), its trigger, and the background worker
-- that sends what was queued.  The worker serves this database (see
-- xplenty.database in test/run.sh) and retries after 200 ms, doubling to
-- at most 2 s.
--
CREATE EXTENSION xplenty;
\! test/mock/mockctl reset --keep-jobs

-- settle(ids): wait (at most 30 s) until no request of ids is pending,
-- then say how many requests ended in which status.
CREATE FUNCTION settle(ids bigint[], OUT status text, OUT requests bigint)
RETURNS SETOF record LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..300 LOOP
		EXIT WHEN NOT EXISTS (SELECT 1 FROM xplenty_queue q
							  WHERE q.id = ANY (ids)
							  AND q.status IN ('queued', 'submitting',
											   'checking'));
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN QUERY SELECT q.status, count(*) FROM xplenty_queue q
				 WHERE q.id = ANY (ids) GROUP BY q.status ORDER BY 1;
END $$;

-- After "\set stats `test/mock/mockctl stats`", :'stats' is what the mock
-- API counted since its last reset: run_job_posts is its POST /jobs.

--
-- A request is checked exactly as xplenty_run_job checks one, and a bad
-- one fails now, in the caller's transaction.
--
SELECT xplenty_enqueue_job(0, 434);
SELECT xplenty_enqueue_job(52, 434, '{"LIMIT": 10}');
SELECT xplenty_enqueue_job(52, 434, NULL, '[]');
SELECT count(*) AS rows_queued FROM xplenty_queue;

--
-- Queued and committed: the worker sends it and records the job.
--
SELECT xplenty_enqueue_job(52, 434, '{"DAY": "2026-12-03"}') AS first_id
\gset
SELECT * FROM settle(ARRAY[:first_id]::bigint[]);
SELECT status, attempts, job_id IS NOT NULL AS has_job_id,
	   job->>'id' = job_id::text AS job_matches, job->'variables' AS variables,
	   last_error, resent_after_check, enqueued_by
FROM xplenty_queue WHERE id = :first_id;
\set stats `test/mock/mockctl stats`
SELECT :'stats'::jsonb -> 'run_job_posts' AS posts;

--
-- A rollback launches nothing.
--
BEGIN;
SELECT xplenty_enqueue_job(52, 434, '{"ROLLED": "back"}') > 0 AS queued;
ROLLBACK;
SELECT pg_sleep(1);
SELECT count(*) AS rows_rolled_back FROM xplenty_queue
WHERE variables ? 'ROLLED';
\set stats `test/mock/mockctl stats`
SELECT :'stats'::jsonb -> 'run_job_posts' AS posts;

--
-- N requests: exactly N POSTs and N submitted rows.
--
SELECT array_agg(xplenty_enqueue_job(52, 434, jsonb_build_object('N', i::text)))
	AS ids FROM generate_series(1, 50) AS i
\gset
SELECT * FROM settle(:'ids');
\set stats `test/mock/mockctl stats`
SELECT :'stats'::jsonb -> 'run_job_posts' AS posts;
SELECT count(DISTINCT job_id) AS distinct_jobs FROM xplenty_queue
WHERE id = ANY (:'ids');

--
-- A deduplication key: while a request with the key is pending, queuing
-- it again returns the same request.
--
BEGIN;
SELECT xplenty_enqueue_job(52, 434, NULL, NULL, 'nightly-orders') AS a,
	   xplenty_enqueue_job(52, 434, NULL, NULL, 'nightly-orders') AS b
\gset
SELECT :a = :b AS same_request;
COMMIT;
SELECT * FROM settle(ARRAY[:a]::bigint[]);
-- Once it is submitted, the key is free again.
SELECT xplenty_enqueue_job(52, 434, NULL, NULL, 'nightly-orders') <> :a
	AS new_request;

--
-- Triggers: a statement trigger queues one request per statement, a row
-- trigger one per row.
--
CREATE TABLE orders (id int, amount numeric);
CREATE TRIGGER launch_on_arrival AFTER INSERT ON orders
	FOR EACH STATEMENT
	EXECUTE FUNCTION xplenty_enqueue_job_trigger(52, 434, '{"SOURCE": "orders"}');
SELECT max(id) AS before_id FROM xplenty_queue \gset
INSERT INTO orders SELECT i, i * 10 FROM generate_series(1, 1000) AS i;
SELECT count(*) AS statement_requests, min(variables::text) AS variables
FROM xplenty_queue WHERE id > :before_id;
DROP TRIGGER launch_on_arrival ON orders;

CREATE TRIGGER launch_per_row AFTER INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION xplenty_enqueue_job_trigger(52, 435);
SELECT max(id) AS before_id FROM xplenty_queue \gset
INSERT INTO orders VALUES (1001, 1), (1002, 2), (1003, 3);
SELECT count(*) AS row_requests FROM xplenty_queue
WHERE id > :before_id AND package_id = 435;
DROP TRIGGER launch_per_row ON orders;

-- Bad trigger arguments are reported when the trigger fires.
CREATE TRIGGER bad_args AFTER INSERT ON orders
	FOR EACH STATEMENT EXECUTE FUNCTION xplenty_enqueue_job_trigger(52);
INSERT INTO orders VALUES (0, 0);
DROP TRIGGER bad_args ON orders;
CREATE TRIGGER bad_args AFTER INSERT ON orders
	FOR EACH STATEMENT EXECUTE FUNCTION xplenty_enqueue_job_trigger('x', 434);
INSERT INTO orders VALUES (0, 0);
DROP TRIGGER bad_args ON orders;
CREATE TRIGGER bad_args AFTER INSERT ON orders
	FOR EACH STATEMENT
	EXECUTE FUNCTION xplenty_enqueue_job_trigger(52, 434, '{"N": 1}');
INSERT INTO orders VALUES (0, 0);
DROP TRIGGER bad_args ON orders;
CREATE TRIGGER bad_args BEFORE INSERT ON orders
	FOR EACH ROW EXECUTE FUNCTION xplenty_enqueue_job_trigger(52, 434);
INSERT INTO orders VALUES (0, 0);
DROP TRIGGER bad_args ON orders;
SELECT xplenty_enqueue_job_trigger();

SELECT max(id) AS last_trigger_id FROM xplenty_queue \gset
SELECT * FROM settle(ARRAY(SELECT id FROM xplenty_queue));

--
-- Retries: what is safe to retry is retried with backoff; what would fail
-- again is given up at once with the API's message.
--
\! test/mock/mockctl reset --keep-jobs
\! test/mock/mockctl faults '[{"path": "^/jobs$", "package_id": 501, "status": 503, "times": 2}, {"path": "^/jobs$", "package_id": 502, "status": 502, "times": 1}, {"path": "^/jobs$", "package_id": 429, "status": 429, "headers": {"Retry-After": "1"}, "body": {"message": "Rate Limit Exceeded"}, "times": 1}, {"path": "^/jobs$", "package_id": 522, "status": 422, "body": {"message": "Validation failed", "errors": ["cluster 52 is not available"]}, "times": -1}, {"path": "^/jobs$", "package_id": 404, "status": 404, "body": {"message": "Item not found."}, "times": -1}]'
SELECT array[xplenty_enqueue_job(52, 501), xplenty_enqueue_job(52, 502),
			 xplenty_enqueue_job(52, 429), xplenty_enqueue_job(52, 522),
			 xplenty_enqueue_job(52, 404)] AS ids
\gset
SELECT * FROM settle(:'ids');
SELECT package_id, status, attempts, last_error
FROM xplenty_queue WHERE id = ANY (:'ids') ORDER BY id;

-- Attempts are counted, and the worker gives up after xplenty.max_attempts.
ALTER SYSTEM SET xplenty.max_attempts = 3;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\! test/mock/mockctl faults '{"path": "^/jobs$", "package_id": 599, "status": 503, "times": -1}'
SELECT xplenty_enqueue_job(52, 599) AS id \gset
SELECT * FROM settle(ARRAY[:id]::bigint[]);
SELECT status, attempts, last_error FROM xplenty_queue WHERE id = :id;
ALTER SYSTEM RESET xplenty.max_attempts;
SELECT pg_reload_conf();

--
-- A request that may have reached the API is never sent again blind: the
-- worker lists the package's jobs and adopts the one it finds ...
--
\! test/mock/mockctl reset --keep-jobs
\! test/mock/mockctl faults '{"path": "^/jobs$", "package_id": 601, "create": true, "action": "close"}'
SELECT xplenty_enqueue_job(52, 601, '{"RUN": "lost-answer"}') AS id \gset
SELECT * FROM settle(ARRAY[:id]::bigint[]);
\set log `test/mock/mockctl requests`
SELECT status, attempts, checks, resent_after_check,
	   job_id = (SELECT (r->>'job_id')::bigint
				 FROM jsonb_array_elements(:'log') AS r
				 WHERE r->>'method' = 'POST') AS adopted_the_created_job,
	   last_error
FROM xplenty_queue WHERE id = :id;
\set stats `test/mock/mockctl stats`
SELECT :'stats'::jsonb -> 'run_job_posts' AS posts;

-- ... and sends it again only when the check finds no job.
\! test/mock/mockctl faults '{"path": "^/jobs$", "package_id": 602, "action": "close"}'
SELECT xplenty_enqueue_job(52, 602, '{"RUN": "never-arrived"}') AS id \gset
SELECT * FROM settle(ARRAY[:id]::bigint[]);
SELECT status, attempts, checks, resent_after_check, job_id IS NOT NULL AS has_job,
	   last_error
FROM xplenty_queue WHERE id = :id;
\set stats `test/mock/mockctl stats`
SELECT :'stats'::jsonb -> 'run_job_posts' AS posts;

-- A 500 may come after the job was created: checked the same way.
\! test/mock/mockctl faults '{"path": "^/jobs$", "package_id": 603, "create": true, "status": 500, "body": {"message": "Internal Server Error"}}'
SELECT xplenty_enqueue_job(52, 603) AS id \gset
SELECT * FROM settle(ARRAY[:id]::bigint[]);
SELECT status, attempts, checks, resent_after_check, last_error
FROM xplenty_queue WHERE id = :id;

-- If the API cannot be asked, the row says so rather than guessing.
ALTER SYSTEM SET xplenty.max_attempts = 2;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\! test/mock/mockctl faults '[{"path": "^/jobs$", "method": "POST", "package_id": 604, "create": true, "action": "close"}, {"path": "^/jobs$", "method": "GET", "status": 503, "times": -1}]'
SELECT xplenty_enqueue_job(52, 604) AS id \gset
SELECT * FROM settle(ARRAY[:id]::bigint[]);
SELECT status, attempts, checks, last_error FROM xplenty_queue WHERE id = :id;
ALTER SYSTEM RESET xplenty.max_attempts;
SELECT pg_reload_conf();

--
-- Who may queue: nobody until granted; a launcher reads the queue but
-- cannot write it directly.
--
CREATE ROLE xplenty_test_user;
SET ROLE xplenty_test_user;
SELECT xplenty_enqueue_job(52, 434);
SELECT count(*) FROM xplenty_queue;
RESET ROLE;
GRANT EXECUTE ON FUNCTION xplenty_enqueue_job(int, int, jsonb, jsonb, text, bigint)
	TO xplenty_test_user;
GRANT SELECT ON xplenty_queue TO xplenty_test_user;
SET ROLE xplenty_test_user;
SELECT xplenty_enqueue_job(52, 434, '{"BY": "user"}') > 0 AS queued;
SELECT enqueued_by FROM xplenty_queue WHERE variables ->> 'BY' = 'user';
-- It sees only the requests it queued itself.
SELECT count(*) AS visible, count(*) FILTER (WHERE enqueued_by <> current_user)
	AS others FROM xplenty_queue;
UPDATE xplenty_queue SET status = 'submitted';
INSERT INTO xplenty_queue (cluster_id, package_id, enqueued_by)
	VALUES (52, 434, 'someone');
RESET ROLE;
REVOKE ALL ON xplenty_queue FROM xplenty_test_user;
REVOKE ALL ON FUNCTION xplenty_enqueue_job(int, int, jsonb, jsonb, text, bigint)
	FROM xplenty_test_user;
DROP ROLE xplenty_test_user;

-- The queue is kept by pg_dump, as the extension's own data.
SELECT c.relname, e.extconfig IS NOT NULL AS dumped
FROM pg_extension e, unnest(e.extconfig) AS cfg(oid)
JOIN pg_class c ON c.oid = cfg.oid
WHERE e.extname = 'xplenty' ORDER BY 1;

SELECT * FROM settle(ARRAY(SELECT id FROM xplenty_queue));
DROP TABLE orders;
DROP FUNCTION settle(bigint[]);
DROP EXTENSION xplenty;
