#!/usr/bin/env bash
# test/soak/soak.sh - the worker drains a long stream of requests against a
# mock API that fails in every way at random, while the server is restarted
# and the worker killed; then every request is checked.
#
# Run as root, like test/run.sh (it installs Debian packages and the
# extension):
#     test/soak/soak.sh                 # SOAK_N=100000 requests
#     SOAK_N=2000 test/soak/soak.sh     # a quick try, about a minute
# It builds and installs the extension, starts a throwaway cluster
# (test/lib.sh start_cluster) and a mock Xplenty API, and runs
# test/soak/soak.py, which queues the requests in batches, runs the chaos
# (SIGKILL of the worker, pg_ctl restart -m fast and -m immediate, the
# mock refusing connections for a few seconds), samples the worker's
# memory and open files, waits until no request is pending and checks
# every one against what the mock saw.  The summary is printed and
# written to test/soak/out/soak-TIMESTAMP/summary.txt, with the samples
# and the event log beside it; the last line is "N passed, N failed" and
# the exit status is non-zero if a check failed.
#
# Environment:
#   SOAK_N            requests (default 100000)
#   SOAK_BATCH        requests per enqueuing transaction (default 10000,
#                     or N/10 when that is smaller)
#   SOAK_IN_FLIGHT    xplenty.max_in_flight (default 64)
#   SOAK_SEED         seed of the mock's random faults (default 1)
#   SOAK_TIMEOUT      seconds the whole drain may take (default 3600)
#   SOAK_PG_PORT, SOAK_MOCK_PORT   (defaults 58532, 58181)
#   KEEP=1            keep the scratch directory (cluster, logs)
#   SOAK_NO_BUILD=1   use the extension as installed, do not build it

set -u
. "$(dirname "$0")/../lib.sh"

SOAK_N=${SOAK_N:-100000}
PG_PORT=${SOAK_PG_PORT:-58532}
MOCK_PORT=${SOAK_MOCK_PORT:-58181}
SEED=${SOAK_SEED:-1}
IN_FLIGHT=${SOAK_IN_FLIGHT:-64}
DB=soak
OUT=$TOP/test/soak/out/soak-$(date +%Y%m%d-%H%M%S)

if [ "$(id -u)" != 0 ]; then
	echo "test/soak/soak.sh: run it as root (it kills and restarts servers)" >&2
	exit 2
fi
install_packages || exit 1
if [ "${SOAK_NO_BUILD:-}" != 1 ]; then
	build_and_install || exit 1
fi

work=$(make_workdir soak)
cleanup() {
	stop_cluster "$work"
	stop_mock "$work"
	if [ "${KEEP:-}" = 1 ]; then
		echo "scratch directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
mkdir -p "$OUT"

# The mock: a fixed port outside the ephemeral range, since it stops
# listening for a while now and then (POST /_mock/down) and must get the
# same port back; credits enough that the rate limit is never the real
# API's (the soak's 429s come from fault rules).
say "mock API on port $MOCK_PORT (seed $SEED)"
# The interpreter itself, not a wrapper (pyenv's shims run python as a
# child), so that mock.pid is the mock's own pid: soak.py samples it.
PY=$(python3 -c 'import sys; print(sys.executable)')
"$PY" "$TOP/test/mock/mock_xplenty.py" --port "$MOCK_PORT" \
	--port-file "$work/mock.port" --seed "$SEED" \
	--rate-limit 1000000000 >"$work/mock.log" 2>&1 &
echo $! >"$work/mock.pid"
python3 "$TOP/test/mock/mockctl" --port "$MOCK_PORT" wait-ready --timeout 10 ||
	{ cat "$work/mock.log"; exit 1; }

say "cluster on port $PG_PORT"
start_cluster "$work" "$PG_PORT" "$DB" "$MOCK_PORT" || exit 1
# Speed: short retries, a short request timeout (the mock's slowest
# answers outlast it on purpose), enough attempts that random transient
# faults rarely use them up, and a small poll budget so that following
# jobs is exercised without dominating the traffic.
cat >>"$work/data/postgresql.conf" <<EOF
# soak settings
xplenty.max_in_flight = $IN_FLIGHT
xplenty.max_attempts = 40
xplenty.retry_base_delay = '50ms'
xplenty.retry_max_delay = '2s'
xplenty.connect_timeout = '1s'
xplenty.request_timeout = '2s'
xplenty.poll_budget = 3600
xplenty.poll_min_interval = '1s'
xplenty.poll_max_interval = '10s'
xplenty.queue_retention = -1
restart_after_crash = on
log_checkpoints = off
log_timezone = 'UTC'
EOF
as_pg pg_ctl -D "$work/data" -l "$work/server.log" -w restart >/dev/null ||
	{ tail -20 "$work/server.log"; exit 1; }
as_pg psql -X -q -h "$work" -p "$PG_PORT" -U postgres -d "$DB" \
	-c "CREATE EXTENSION xplenty" || exit 1

{
	echo "commit: $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null)"
	echo "uncommitted changes in src/: $(git -C "$TOP" status --short -- src sql 2>/dev/null | wc -l) files" \
		"(diff sha1 $(git -C "$TOP" diff -- src sql 2>/dev/null | sha1sum | cut -c1-12))"
	echo "xplenty.so: $(sha1sum "$(pg_config --pkglibdir)/xplenty.so" | cut -c1-12)"
} >"$OUT/build.txt"

say "soak: $SOAK_N requests; results in $OUT"
python3 "$TOP/test/soak/soak.py" \
	--work "$work" --data "$work/data" --pg-port "$PG_PORT" --db "$DB" \
	--mock-port "$MOCK_PORT" --n "$SOAK_N" --batch "${SOAK_BATCH:-0}" \
	--in-flight "$IN_FLIGHT" --timeout "${SOAK_TIMEOUT:-3600}" \
	--server-log "$work/server.log" --mock-pid "$(cat "$work/mock.pid")" \
	--out "$OUT"
rc=$?
cp "$work/data/postgresql.conf" "$OUT/postgresql.conf" 2>/dev/null
exit $rc
