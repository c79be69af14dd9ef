--
-- xplenty_run_job(): launch a job synchronously, and every way it can fail.
--
-- The mock Xplenty API listens on 127.0.0.1:58080 (see test/run.sh); the
-- cluster has xplenty.api_url, account_id and api_key pointing at it.
--
CREATE EXTENSION xplenty;
\! test/mock/mockctl reset

-- try(): run a statement and show how it failed, SQLSTATE included.
CREATE FUNCTION try(stmt text,
					OUT code text, OUT message text,
					OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	code := '00000';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE,
		message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
		hint = PG_EXCEPTION_HINT;
END $$;

-- requests(): what the mock API received since the last reset.
CREATE FUNCTION requests(log jsonb) RETURNS SETOF jsonb
LANGUAGE sql AS $$ SELECT jsonb_array_elements(log) $$;

\x on

--
-- A job launched: the API's job comes back as jsonb.
--
SELECT job->>'id' AS id, job->>'status' AS status,
	   job->'cluster_id' AS cluster_id, job->'package_id' AS package_id,
	   job->'variables' AS variables
FROM xplenty_run_job(52, 434) AS job;

SELECT xplenty_run_job(52, 434,
					   '{"MY_STATIC_VAR": "some static variable"}',
					   '{"current_time": "CurrentTime()"}') ->> 'id' AS id;

-- NULL variables are left out of the body, not sent as null.
SELECT xplenty_run_job(52, 434, NULL, NULL) ->> 'id' AS id;

-- What went over the wire: method, path, headers, authentication, body.
\set log `test/mock/mockctl requests`
SELECT r->>'method' AS method, r->>'path' AS path,
	   r->'headers'->>'accept' AS accept,
	   r->'headers'->>'content-type' AS content_type,
	   r->'headers'->>'authorization' =
		   'Basic ' || encode('test-api-key:', 'base64') AS basic_auth_ok,
	   r->'headers'->>'user-agent' AS user_agent,
	   r->'json' AS body, r->>'status' AS status
FROM requests(:'log') AS r;
\x off

--
-- Bad arguments are refused before anything is sent.
--
\! test/mock/mockctl reset
\x on
SELECT * FROM try($$SELECT xplenty_run_job(NULL, 434)$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, NULL)$$);
SELECT * FROM try($$SELECT xplenty_run_job(0, 434)$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, -1)$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, '[1, 2]')$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, '"DAY=1"')$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, 'null')$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, NULL, '17')$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, '{"LIMIT": 10}')$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, '{"A": {"B": "C"}}')$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, '{"A": null}')$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, '{"1DAY": "x"}')$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, '{"a b": "x"}')$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, '{"": "x"}')$$);
SELECT * FROM try($$SELECT xplenty_run_job(52, 434, '{"D": "1"}', '{"D": "Now()"}')$$);
\x off
-- None of those reached the API.
\! test/mock/mockctl stats | python3 -c 'import json,sys; print("requests:", json.load(sys.stdin)["requests"])'

--
-- Settings: which one is missing, and who may change them.
--
\x on
SET xplenty.account_id = '';
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
RESET xplenty.account_id;
SELECT * FROM try($$SET xplenty.account_id = 'acme/../other'$$);
SET xplenty.api_key = '';
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
SET xplenty.api_key = 'has:colon';
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
RESET xplenty.api_key;
SELECT * FROM try($$SET xplenty.api_url = 'file:///etc/passwd'$$);
SELECT * FROM try($$SET xplenty.api_url = 'http://127.0.0.1:58080/?x=1'$$);
SET xplenty.api_url = 'http://127.0.0.1:58080///';
SHOW xplenty.api_url;
RESET xplenty.api_url;
SET xplenty.api_key_file = '/nonexistent/xplenty.key';
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
RESET xplenty.api_key_file;
\x off
SELECT name, setting, unit, context FROM pg_settings
WHERE name LIKE 'xplenty.%' ORDER BY name;

--
-- The API refuses: its status and message, a SQLSTATE, and a hint.
--
\! test/mock/mockctl reset
\x on
SET xplenty.api_key = 'wrong-key';
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
RESET xplenty.api_key;
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 402, "body": {"message": "Payment required."}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 403, "body": {"message": "Forbidden."}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 404, "body": {"message": "Item not found."}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 406, "body": {"message": "Not Acceptable"}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 415, "body": {"message": "Unsupported Media Type"}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 422, "body": {"message": "Validation failed", "errors": ["cluster is terminated"]}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 429, "body": {"message": "Rate Limit Exceeded"}, "headers": {"Retry-After": "30"}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 500, "body": {"message": "Internal Server Error"}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 502, "body": "<html>Bad Gateway</html>"}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 503, "body": {"message": "Service Unavailable"}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 200, "body": {"id": 1}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);

--
-- The API's real validation, without a scripted fault: a variable that
-- the mock refuses (it takes only string values, as we do) cannot get
-- there, so ask for an account the key does not belong to.
--
SET xplenty.account_id = 'someone-else';
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
RESET xplenty.account_id;

--
-- A 201 whose job cannot be read: the job was created, and the error
-- says so.  The first answer is the API documentation's own example,
-- which has trailing commas.
--
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": "{\n  \"id\": 157,\n  \"status\": \"completed\",\n  \"outputs\": [\n    {\"id\": 521,},\n  ],\n}"}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "body": [1, 2, 3]}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "body": {"status": "idle"}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "body": {"id": "157"}}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": ""}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
-- JSON that PostgreSQL's jsonb cannot hold (found by fuzz/): the same error.
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": "{\"id\": 157, \"errors\": \"\\u0000\"}"}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": "{\"id\": 157, \"x\": 1e131072}"}'
SELECT code, message, detail LIKE 'The answer cannot be read as jsonb: value overflows numeric format%' AS overflow_detail, hint
FROM try($$SELECT xplenty_run_job(52, 434)$$);

--
-- A 201 whose job is read in one pass (src/quick_json.c, answer_jsonb.c)
-- gives the very jsonb that jsonb_in makes of the same text.
--
-- escapes and characters beyond ASCII
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": "{\"id\": 157, \"s\": \"tab\\there \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\", \"u\": \"\\u00e9\\u4e2d\\ud83d\\ude00\", \"raw\": \"é中😀\"}"}'
SELECT j = a::jsonb AS same_value, j::text = a::jsonb::text AS same_text,
       pg_column_size(j) = pg_column_size(a::jsonb) AS same_size
FROM (SELECT xplenty_run_job(52, 434) AS j) r,
     (SELECT $answer${"id": 157, "s": "tab\there \"q\" \\ \/ \b\f\n\r", "u": "\u00e9\u4e2d\ud83d\ude00", "raw": "é中😀"}$answer$::text AS a) t;
-- the same key twice: the later one is kept
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": "{\"id\": 1, \"b\": 1, \"a\": 2, \"b\": 3, \"aa\": [], \"\": {}, \"id\": 157}"}'
SELECT j = a::jsonb AS same_value, j::text = a::jsonb::text AS same_text,
       pg_column_size(j) = pg_column_size(a::jsonb) AS same_size
FROM (SELECT xplenty_run_job(52, 434) AS j) r,
     (SELECT $answer${"id": 1, "b": 1, "a": 2, "b": 3, "aa": [], "": {}, "id": 157}$answer$::text AS a) t;
-- numbers
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": "{\"id\": 157, \"n\": [0, -0, 7, -42, 1.5, -12.250, 0.0, 10000, 123456789012345678, 1234567890123456789, -999999999999999999, 12345678901234567890123456789.123456789]}"}'
SELECT j = a::jsonb AS same_value, j::text = a::jsonb::text AS same_text,
       pg_column_size(j) = pg_column_size(a::jsonb) AS same_size
FROM (SELECT xplenty_run_job(52, 434) AS j) r,
     (SELECT $answer${"id": 157, "n": [0, -0, 7, -42, 1.5, -12.250, 0.0, 10000, 123456789012345678, 1234567890123456789, -999999999999999999, 12345678901234567890123456789.123456789]}$answer$::text AS a) t;
-- a number too long for the quick reader, which leaves it to jsonb_in
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": "{\"id\": 157, \"n\": 1234567890123456789012345678901234567890.5}"}'
SELECT j = a::jsonb AS same_value, j::text = a::jsonb::text AS same_text,
       pg_column_size(j) = pg_column_size(a::jsonb) AS same_size
FROM (SELECT xplenty_run_job(52, 434) AS j) r,
     (SELECT $answer${"id": 157, "n": 1234567890123456789012345678901234567890.5}$answer$::text AS a) t;
-- nesting, empty containers, keywords
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": "{\"id\": 157, \"a\": [[[]], {\"x\": {\"y\": [null, true, false]}}], \"e\": [], \"o\": {}}"}'
SELECT j = a::jsonb AS same_value, j::text = a::jsonb::text AS same_text,
       pg_column_size(j) = pg_column_size(a::jsonb) AS same_size
FROM (SELECT xplenty_run_job(52, 434) AS j) r,
     (SELECT $answer${"id": 157, "a": [[[]], {"x": {"y": [null, true, false]}}], "e": [], "o": {}}$answer$::text AS a) t;
-- white space around every token
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": " \n\t{ \"id\" : 157 , \"k\"\r\n: [ 1 , 2 ] }\n "}'
SELECT j = a::jsonb AS same_value, j::text = a::jsonb::text AS same_text,
       pg_column_size(j) = pg_column_size(a::jsonb) AS same_size
FROM (SELECT xplenty_run_job(52, 434) AS j) r,
     (SELECT $answer$ 
	{ "id" : 157 , "k"
: [ 1 , 2 ] }
 $answer$::text AS a) t;
-- more members than the insertion sort takes
\! test/mock/mockctl faults '{"path": "^/jobs$", "status": 201, "headers": {"Content-Type": "application/json"}, "body": "{\"k19\": 0, \"k13\": 1, \"k5\": 2, \"k39\": 3, \"k3\": 4, \"k11\": 5, \"k28\": 6, \"k14\": 7, \"k18\": 8, \"k36\": 9, \"k9\": 10, \"k2\": 11, \"k1\": 12, \"k24\": 13, \"k10\": 14, \"k33\": 15, \"k27\": 16, \"k31\": 17, \"k21\": 18, \"k29\": 19, \"k38\": 20, \"k20\": 21, \"k12\": 22, \"k26\": 23, \"k25\": 24, \"k32\": 25, \"k7\": 26, \"k22\": 27, \"k6\": 28, \"k7\": 29, \"k17\": 30, \"k16\": 31, \"k35\": 32, \"k0\": 33, \"k4\": 34, \"k30\": 35, \"k23\": 36, \"k8\": 37, \"k34\": 38, \"k37\": 39, \"k15\": 40, \"id\": 157}"}'
SELECT j = a::jsonb AS same_value, j::text = a::jsonb::text AS same_text,
       pg_column_size(j) = pg_column_size(a::jsonb) AS same_size
FROM (SELECT xplenty_run_job(52, 434) AS j) r,
     (SELECT $answer${"k19": 0, "k13": 1, "k5": 2, "k39": 3, "k3": 4, "k11": 5, "k28": 6, "k14": 7, "k18": 8, "k36": 9, "k9": 10, "k2": 11, "k1": 12, "k24": 13, "k10": 14, "k33": 15, "k27": 16, "k31": 17, "k21": 18, "k29": 19, "k38": 20, "k20": 21, "k12": 22, "k26": 23, "k25": 24, "k32": 25, "k7": 26, "k22": 27, "k6": 28, "k7": 29, "k17": 30, "k16": 31, "k35": 32, "k0": 33, "k4": 34, "k30": 35, "k23": 36, "k8": 37, "k34": 38, "k37": 39, "k15": 40, "id": 157}$answer$::text AS a) t;

--
-- An answer larger than xplenty.max_response_size is refused.
--
SET xplenty.max_response_size = '1kB';
\! test/mock/mockctl faults "{\"path\": \"^/jobs$\", \"status\": 201, \"body\": {\"id\": 7, \"errors\": \"$(printf 'x%.0s' $(seq 2000))\"}}"
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
RESET xplenty.max_response_size;

--
-- The network fails: say which way, where, and whether the job may exist.
--
SET xplenty.api_url = 'http://127.0.0.1:1';
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
SET xplenty.api_url = 'https://127.0.0.1:58080';
SELECT code, message, detail LIKE 'Could not set up a TLS connection to "https://127.0.0.1:58080/acme/api/jobs": %' AS tls_detail, hint
FROM try($$SELECT xplenty_run_job(52, 434)$$);
RESET xplenty.api_url;
\! test/mock/mockctl faults '{"path": "^/jobs$", "action": "close"}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "action": "reset"}'
SELECT code, message, detail LIKE 'The connection to "%" failed after the request was sent: %' AS reset_detail, hint
FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "create": true, "action": "partial"}'
SELECT code, message, detail LIKE 'The connection to "%" failed after the request was sent: %' AS partial_detail, hint
FROM try($$SELECT xplenty_run_job(52, 434)$$);
\! test/mock/mockctl faults '{"path": "^/jobs$", "action": "garbage", "body": "SSH-2.0-OpenSSH_9.2\r\n"}'
SELECT code, message, detail LIKE 'The connection to "%" failed after the request was sent: %' AS garbage_detail, hint
FROM try($$SELECT xplenty_run_job(52, 434)$$);
SET xplenty.request_timeout = '300ms';
\! test/mock/mockctl faults '{"path": "^/jobs$", "action": "hang", "hang_s": 5}'
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
RESET xplenty.request_timeout;

--
-- statement_timeout stops a call in flight with PostgreSQL's own error,
-- and the next call in the session works.
--
\! test/mock/mockctl faults '{"path": "^/jobs$", "action": "hang", "hang_s": 5}'
SET statement_timeout = '300ms';
\x off
SELECT xplenty_run_job(52, 434);
RESET statement_timeout;
SELECT xplenty_run_job(52, 434) ? 'id' AS works_again;

--
-- Privileges: launching a job costs money, so nobody may until granted;
-- the key and the URL are a superuser's.
--
CREATE ROLE xplenty_test_launcher;
SET ROLE xplenty_test_launcher;
SELECT * FROM try($$SELECT xplenty_run_job(52, 434)$$);
SELECT * FROM try($$SHOW xplenty.api_key$$);
SELECT * FROM try($$SELECT current_setting('xplenty.api_key')$$);
SELECT count(*) AS key_rows_visible FROM pg_settings
WHERE name = 'xplenty.api_key';
SELECT * FROM try($$SET xplenty.api_key = 'mine'$$);
SELECT * FROM try($$SET xplenty.api_url = 'http://127.0.0.1:9999'$$);
SELECT * FROM try($$SET xplenty.tls_verify = off$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION xplenty_run_job(int, int, jsonb, jsonb)
	TO xplenty_test_launcher;
SET ROLE xplenty_test_launcher;
SELECT xplenty_run_job(52, 434) ? 'id' AS launched;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION xplenty_run_job(int, int, jsonb, jsonb)
	FROM xplenty_test_launcher;
DROP ROLE xplenty_test_launcher;

DROP FUNCTION try(text);
DROP FUNCTION requests(jsonb);
DROP EXTENSION xplenty;
