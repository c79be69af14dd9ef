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
