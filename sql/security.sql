--
-- What a role that is not a superuser can try, and what stops it.  The
-- key's secrecy and the settings only a superuser may change are in
-- run_job.sql and test/t/050_cancel_and_secrets.pl; see test/RELIABILITY.md.
--
CREATE EXTENSION xplenty;
\! test/mock/mockctl reset

--
-- Nothing in a variable can break out of its JSON string: the body is
-- built by PostgreSQL's JSON code, and the API receives exactly what was
-- given.
--
SELECT xplenty_run_job(52, 434,
	jsonb_build_object(
		'QUOTE', 'x", "package_id": 1, "y": "',
		'BACKSLASH', E'a\\"b\\\\',
		'NEWLINE', E'line1\nline2\r\n',
		'UNICODE', 'zoë ☃ 𝄞',
		'CONTROL', E'\u0001\u001f')) ? 'id' AS launched \gset
\set log `test/mock/mockctl requests`
SELECT r->'json'->'variables' = jsonb_build_object(
		'QUOTE', 'x", "package_id": 1, "y": "',
		'BACKSLASH', E'a\\"b\\\\',
		'NEWLINE', E'line1\nline2\r\n',
		'UNICODE', 'zoë ☃ 𝄞',
		'CONTROL', E'\u0001\u001f') AS variables_arrived_intact,
	   r->'json'->'package_id' AS package_id,
	   jsonb_object_keys(r->'json') AS body_keys
FROM jsonb_array_elements(:'log') AS r ORDER BY body_keys;

-- Variable names cannot carry anything but an identifier.
SELECT xplenty_run_job(52, 434, '{"A\"B": "x"}');
SELECT xplenty_run_job(52, 434, '{"A&package_id=1": "x"}');

--
-- Nothing reaches the URL path but checked settings and numbers.
--
SELECT set_config('xplenty.account_id', 'acme?admin=1', false);
SELECT set_config('xplenty.account_id', 'acme%2F..', false);
SELECT set_config('xplenty.api_url', 'http://127.0.0.1:58080/acme/api/jobs#', false);
SELECT xplenty_job(-1);
SELECT * FROM xplenty_jobs(status => 'all&package_id=1');
SELECT * FROM xplenty_jobs(direction => 'asc;drop');

--
-- A role without the grants can neither launch nor queue, not even
-- through a trigger on a table of its own; with them, it still cannot
-- write the queue or read another role's requests.
--
CREATE ROLE xplenty_mallory;
CREATE ROLE xplenty_alice;
GRANT CREATE ON SCHEMA public TO xplenty_mallory;
SET ROLE xplenty_mallory;
CREATE TABLE mallory_data (x int);
CREATE TRIGGER sneak AFTER INSERT ON mallory_data
	FOR EACH STATEMENT EXECUTE FUNCTION xplenty_enqueue_job_trigger(52, 434);
SELECT xplenty_enqueue_job(52, 434);
SELECT xplenty_job(1000);
SELECT xplenty_stop_job(1000);
RESET ROLE;

GRANT EXECUTE ON FUNCTION xplenty_enqueue_job(int, int, jsonb, jsonb, text, bigint)
	TO xplenty_mallory, xplenty_alice;
GRANT SELECT ON xplenty_queue TO xplenty_mallory, xplenty_alice;
SET ROLE xplenty_alice;
SELECT xplenty_enqueue_job(52, 434, '{"SECRET": "alice only"}') AS alice_id \gset
RESET ROLE;
SET ROLE xplenty_mallory;
SELECT count(*) AS alices_rows_seen FROM xplenty_queue
WHERE enqueued_by = 'xplenty_alice';
UPDATE xplenty_queue SET status = 'failed' WHERE id = :alice_id;
DELETE FROM xplenty_queue WHERE id = :alice_id;
-- Depending on another role's request is refused as if it did not exist.
SELECT xplenty_enqueue_job(52, 434, depends_on => :alice_id);
-- Nor can it send its requests to another account.
SET xplenty.account_id = 'other';
RESET ROLE;

SELECT enqueued_by, status <> 'failed' AS untouched
FROM xplenty_queue WHERE id = :alice_id;

DROP TABLE mallory_data;
REVOKE ALL ON xplenty_queue FROM xplenty_mallory, xplenty_alice;
REVOKE ALL ON FUNCTION xplenty_enqueue_job(int, int, jsonb, jsonb, text, bigint)
	FROM xplenty_mallory, xplenty_alice;
REVOKE CREATE ON SCHEMA public FROM xplenty_mallory;
DROP ROLE xplenty_mallory;
DROP ROLE xplenty_alice;
DROP EXTENSION xplenty;
