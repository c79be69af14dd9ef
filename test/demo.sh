#!/usr/bin/env bash
# test/demo.sh - see the extension launch a job both ways, on a fresh
# Debian 12 machine.  Run as root (it installs Debian packages and the
# extension):
#     test/demo.sh
# It starts a throwaway PostgreSQL cluster and the local mock Xplenty API,
# launches a job synchronously with xplenty_run_job, queues one with
# xplenty_enqueue_job for the background worker, shows both, and removes
# everything it started.

set -eu
. "$(dirname "$0")/lib.sh"

PORT=58433
MOCK_PORT=58081
DB=demo

install_packages
build_and_install

work=$(make_workdir demo)
cleanup() {
	stop_cluster "$work"
	stop_mock "$work"
	rm -rf "$work"
}
trap cleanup EXIT

say "starting the mock Xplenty API on 127.0.0.1:$MOCK_PORT"
start_mock "$work" "$MOCK_PORT"
say "starting a throwaway PostgreSQL cluster in $work"
start_cluster "$work" "$PORT" "$DB" "$MOCK_PORT"

psql_demo() {
	as_pg psql -X -q -h "$work" -p "$PORT" -U postgres -d "$DB" \
		-v ON_ERROR_STOP=1 "$@"
}

psql_demo <<'SQL'
\echo
\echo '-- 1. Launch a job now, and get the job the API created:'
\echo
CREATE EXTENSION xplenty;
\echo 'SELECT jsonb_pretty(xplenty_run_job(52, 434, ''{"MY_STATIC_VAR": "some static variable"}'', ''{"current_time": "CurrentTime()"}''));'
SELECT jsonb_pretty(xplenty_run_job(52, 434,
		'{"MY_STATIC_VAR": "some static variable"}',
		'{"current_time": "CurrentTime()"}')) AS job;

\echo '-- 2. Queue one from a trigger on data arrival; the background worker'
\echo '--    sends it once the transaction commits:'
\echo
CREATE TABLE orders (id int, amount numeric);
CREATE TRIGGER launch_on_arrival AFTER INSERT ON orders
	FOR EACH STATEMENT
	EXECUTE FUNCTION xplenty_enqueue_job_trigger(52, 434, '{"SOURCE": "orders"}');
INSERT INTO orders SELECT i, i * 9.99 FROM generate_series(1, 1000) AS i;
SELECT xplenty_enqueue_job(52, 434, '{"DAY": "2026-12-03"}') AS queued_id;
SELECT id, status, job_id FROM xplenty_queue ORDER BY id;

\echo '-- ... a moment later:'
SELECT pg_sleep(1);
SELECT id, package_id, status, attempts, job_id, variables
FROM xplenty_queue ORDER BY id;
SELECT pid, backend_type, wait_event_type, state
FROM pg_stat_activity WHERE backend_type = 'xplenty worker';
SQL
say "what the mock Xplenty API received"
python3 "$TOP/test/mock/mockctl" --port "$MOCK_PORT" requests |
	python3 -c 'import json, sys
for r in json.load(sys.stdin):
    print(r["method"], r["path"], r["status"], r["body"])'
say "demo done; everything it started is being removed"
