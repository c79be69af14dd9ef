#!/usr/bin/env bash
#
# bench/queue.sh - the queue and its background worker, side by side in one
# run, on loopback:
#
#   memory   the worker's memory after 1,000 requests and after 100,000 more
#   drain    requests drained per second by the worker from nginx answering
#            at once, state changes included, against libcurl_client (the
#            bare libcurl client of bench/run.sh) in the same run
#   delay    the same against a peer that answers after 200 ms (the test
#            mock with a delay rule), at several xplenty.max_in_flight
#   trigger  what xplenty_enqueue_job costs in a statement trigger, a row
#            trigger, and called directly
#
# usage: sudo bench/queue.sh
#        sudo BUILD_FROM=HEAD bench/queue.sh    build a commit, not the tree
#
# The extension (the working tree, or BUILD_FROM=<rev>, with PATCH=file) is
# built and installed into a private PostgreSQL installation under the run
# directory (see private_install in lib.sh), never into the system's, so
# the background worker, CREATE EXTENSION and every function load this
# build.  SKIP_BUILD=1 uses the system's installed extension instead.
#
# Knobs (environment):
#   PHASES="memory drain delay trigger"   which parts to run, in this order
#   REPEAT=3          drain rounds after a warm-up one; medians are reported
#   DRAIN_N=20000     requests queued per drain against nginx
#   LIBCURL_CALLS=20000   libcurl_client calls per round
#   DELAY_MS=200      the slow peer's delay
#   CAPS="16 32 64"   xplenty.max_in_flight values tried against it
#   DELAY_SECONDS=10  each slow drain is sized to last about this long
#   MEM_FIRST=1000 MEM_MORE=100000 MEM_BATCH=10000   the memory phase
#   TRIG_ROWS=10000   rows per INSERT in the trigger phase
#   TRIG_REPEAT=51    INSERTs of each kind (plain, statement trigger)
#   ROW_REPEAT=5      row-trigger INSERTs and direct-call runs
#   ENQ_CALLS=20000   xplenty_enqueue_job calls per direct-call run
#   FSYNC_N=5000      one more drain with fsync = on (0: skip)
#   STATEMENTS=1      also restart with pg_stat_statements and auto_explain
#                     and break one drain down by statement
#   PERF=1            also profile the worker during one drain (needs perf)
#   KEEP=1            keep the throwaway cluster's data directory
#
# Everything it starts (a PostgreSQL cluster owned by the postgres OS user,
# an nginx, the mock) lives under bench/out/run-<stamp>/ and is stopped on
# exit, failure or Ctrl-C.  Results go to bench/out/queue-<stamp>.txt.

# shellcheck disable=SC2028  # echo of psql backslash commands: bash echo does not expand them
set -euo pipefail
shopt -s inherit_errexit

PHASES=${PHASES:-memory drain delay trigger}
REPEAT=${REPEAT:-3}
DRAIN_N=${DRAIN_N:-20000}
LIBCURL_CALLS=${LIBCURL_CALLS:-20000}
DELAY_MS=${DELAY_MS:-200}
CAPS=${CAPS:-16 32 64}
DELAY_SECONDS=${DELAY_SECONDS:-10}
MEM_FIRST=${MEM_FIRST:-1000}
MEM_MORE=${MEM_MORE:-100000}
MEM_BATCH=${MEM_BATCH:-10000}
TRIG_ROWS=${TRIG_ROWS:-10000}
TRIG_REPEAT=${TRIG_REPEAT:-51}
ROW_REPEAT=${ROW_REPEAT:-5}
ENQ_CALLS=${ENQ_CALLS:-20000}
FSYNC_N=${FSYNC_N:-5000}
DEFAULT_CAP=16

# Targets of the issue.
T_DRAIN=0.3      # drain rate / libcurl_client
T_DELAY=0.9      # drain rate / (max_in_flight / delay)
T_TRIGGER=1.05   # INSERT with the statement trigger / without

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=queue.sh
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

require_root
ensure_packages postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev \
    nginx curl gcc make python3
make_run_dir
RESULTS=$OUT/queue-$STAMP.txt
REPORT=$RUN/report.txt
: >"$REPORT"
bench_traps

has_phase() { [[ " $PHASES " == *" $1 "* ]]; }
# report LINE...: a line of the results, also shown as it comes
report() { printf '%s\n' "$@" | tee -a "$REPORT" >&2; }

# ---------------------------------------------------------------- build
resolve_source
if [ -n "${SKIP_BUILD:-}" ]; then
    SOURCE_DESC="the installed extension (SKIP_BUILD); tree: $SOURCE_DESC"
    SERVER_BINARY=
    EXPECT_LIB=$("$PGBIN/pg_config" --pkglibdir)/xplenty.so
else
    say "building $SOURCE_DESC into a private installation under $RUN/inst (log: $RUN/build.log)"
    make_ext
    private_install "$RUN/inst"
    SERVER_BINARY=$PRIVATE_POSTGRES
    EXPECT_LIB=$PRIVATE_LIBDIR/xplenty.so
    SOURCE_DESC="$SOURCE_DESC, installed into and loaded from $EXPECT_LIB"
fi
MOCK_PY=$BUILD_DIR/test/mock/mock_xplenty.py
build_libcurl_client

# ---------------------------------------------------------------- servers
setup_pinning
start_nginx
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)

# The worker serves the database postgres (xplenty.database); the trigger
# phase uses a second database, trig, which no worker serves, so that what
# it queues stays queued and the worker's sending does not mix into its
# timings.  xplenty.poll_budget = 0: the worker does not follow jobs (nginx
# answers POST /jobs with a completed job anyway, so there is nothing to
# follow; the mock's jobs would be followed).
init_cluster "$RUN/pg/data"
cat >>"$RUN/pg/data/postgresql.conf" <<EOF
shared_preload_libraries = 'xplenty'
xplenty.database = 'postgres'
xplenty.api_url = '$API_URL'
xplenty.account_id = '$ACCOUNT'
xplenty.api_key = '$API_KEY'
xplenty.max_in_flight = $DEFAULT_CAP
xplenty.poll_budget = 0
EOF
start_cluster "$RUN/pg/data" "$SERVER_BINARY"
PG_LOG=$RUN/pg/postgres.log
psql_cmd postgres
PSQL_DB=("${PSQL[@]}")
psql_cmd trig
PSQL_TRIG=("${PSQL[@]}")
PSQL=("${PSQL_DB[@]}")

"${PSQL[@]}" -c 'CREATE EXTENSION xplenty' -c 'CREATE DATABASE trig'
"${PSQL_TRIG[@]}" -c 'CREATE EXTENSION xplenty'

worker_pid() {
    local pid
    for _ in $(seq 100); do
        pid=$("${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'xplenty worker'")
        [ -n "$pid" ] && { echo "$pid"; return 0; }
        sleep 0.1
    done
    die "no xplenty worker in pg_stat_activity"
}
WORKER_PID=$(worker_pid)

# The worker must run this build: the library it mapped is the one built.
check_worker_library() {
    local mapped
    mapped=$(awk '$6 ~ /\/xplenty\.so$/ { print $6; exit }' "/proc/$WORKER_PID/maps")
    [ -n "$mapped" ] || die "the worker (pid $WORKER_PID) has no xplenty.so mapped"
    [ "$(readlink -f "$mapped")" = "$(readlink -f "$EXPECT_LIB")" ] \
        || die "the worker loaded $mapped, not $EXPECT_LIB"
}
check_worker_library
say "worker pid $WORKER_PID runs $EXPECT_LIB"

# ---------------------------------------------------------------- helpers
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }    # utime + stime
CLK_TCK=$(getconf CLK_TCK)
PEER_PID=$NGINX_WORKER
PEER_NAME=nginx

xact_commits() {
    "${PSQL[@]}" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'"
}

# The worker sends its statistics at most once a second, at the end of a
# round; wait a second and give it a round (a reload wakes it).
flush_worker_stats() {
    sleep 1.1
    "${PSQL[@]}" -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 0.3
}

# set_worker NAME VALUE...: ALTER SYSTEM each pair (VALUE default: RESET)
# and reload; the worker rereads its settings when woken by the reload.
set_worker() {
    local sql=()
    while [ $# -gt 0 ]; do
        if [ "$2" = default ]; then sql+=(-c "ALTER SYSTEM RESET $1")
        else sql+=(-c "ALTER SYSTEM SET $1 = '$2'"); fi
        shift 2
    done
    "${PSQL[@]}" "${sql[@]}" -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 0.5
}

# bench_drain_check(lo, hi, deadline), made in the database the worker
# serves: 'waiting' while requests lo..hi are not all submitted; once they
# are, an error "bench: done at <epoch>", which ends psql's \watch.  The
# waiting is done by \watch, between statements, so that the waiting session
# holds no snapshot: one held for the whole drain (a DO block, or any wait
# inside one statement, as xplenty_wait() was before it became a procedure)
# keeps the old versions of the claimed rows from counting as dead, and the
# worker's claim then walks over all of them in the queue's index (see
# WAITER below).
DRAIN_CHECK_SQL=$(cat <<'EOF'
CREATE FUNCTION bench_drain_check(lo bigint, hi bigint, deadline timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s text;
    pending bigint;
    given_up bigint;
BEGIN
    SELECT status INTO s FROM xplenty_queue WHERE id = hi;
    IF s NOT IN ('queued', 'submitting', 'checking') THEN
        SELECT count(*) FILTER (WHERE status <> 'submitted'),
               count(*) FILTER (WHERE status IN ('failed', 'unknown'))
          INTO pending, given_up
          FROM xplenty_queue WHERE id BETWEEN lo AND hi;
        IF pending = 0 THEN
            RAISE EXCEPTION 'bench: done at %', extract(epoch FROM clock_timestamp());
        END IF;
        IF given_up > 0 THEN
            RAISE EXCEPTION 'bench: % requests failed, e.g.: %', given_up,
                (SELECT last_error FROM xplenty_queue WHERE id BETWEEN lo AND hi
                   AND status IN ('failed', 'unknown') LIMIT 1);
        END IF;
    END IF;
    IF clock_timestamp() > deadline THEN
        RAISE EXCEPTION 'bench: timed out: % not submitted', (SELECT count(*)
            FROM xplenty_queue WHERE id BETWEEN lo AND hi AND status <> 'submitted');
    END IF;
    RETURN 'waiting';
END $$;
EOF
)
"${PSQL[@]}" -c "$DRAIN_CHECK_SQL"

# drain N: queue N requests with xplenty_enqueue_job in one transaction,
# commit, and wait until all are 'submitted'.  The clock starts just before
# COMMIT (clock_timestamp) and stops at max(updated_at) of the N rows, which
# is the start of the worker's transaction that recorded the last answer.
# With WAITER=1, another session waits meanwhile in CALL xplenty_wait() for
# the last of them (it commits after each look, about 10 a second, which
# D_ROUNDS then counts too).  Sets D_RATE (requests/s by those two times), D_POLL_RATE
# (by the time a look every 50 ms saw them all submitted), D_CPU_US (worker
# CPU per request), D_CPU_PCT (worker CPU / elapsed), D_PEER_US (peer CPU
# per request), D_ROUNDS (worker transactions, about), D_ENQ_RATE (the
# enqueue SELECT, calls/s).  D_ROUNDS is the database's commits less those
# of this function's own sessions and of the reload round (autovacuum may
# add a few more).
drain() {
    local n=$1 out lo hi cnt t0 enq_ms t_poll t_last submitted max_att timeout
    local c0 c1 p0 p1 x0 x1 looks own waiter_pid=
    c0=$(proc_ticks "$WORKER_PID"); p0=$(proc_ticks "$PEER_PID"); x0=$(xact_commits)
    out=$("${PSQL[@]}" -F' ' <<EOF
BEGIN;
\timing on
SELECT min(id), max(id), count(*)
  FROM (SELECT xplenty_enqueue_job(52, 434) AS id FROM generate_series(1, $n)) s;
\timing off
SELECT extract(epoch FROM clock_timestamp());
COMMIT;
EOF
)
    read -r lo hi cnt <<<"$(printf '%s\n' "$out" | sed -n 1p)"
    enq_ms=$(printf '%s\n' "$out" | statement_ms)
    t0=$(printf '%s\n' "$out" | tail -1)
    [ "$cnt" = "$n" ] || die "queued $cnt requests, not $n: $out"
    if [ -n "${WAITER:-}" ]; then
        "${PSQL[@]}" -c "CALL xplenty_wait($hi, '10 min')" >"$RUN/waiter.out" 2>&1 &
        waiter_pid=$!
    fi
    timeout=$((60 + n / 20))
    "${PSQL[@]}" >"$RUN/watch.out" 2>"$RUN/watch.err" <<EOF || true
SELECT bench_drain_check($lo, $hi, clock_timestamp() + interval '$timeout seconds') \watch 0.05
EOF
    t_poll=$(sed -n 's/.*bench: done at \([0-9.]*\).*/\1/p' "$RUN/watch.err")
    [ -n "$t_poll" ] || die "drain of $n requests did not finish: $(cat "$RUN/watch.err")"
    looks=$(grep -c '^waiting$' "$RUN/watch.out" || true)
    own=5
    if [ -n "$waiter_pid" ]; then
        wait "$waiter_pid" || die "xplenty_wait failed: $(cat "$RUN/waiter.out")"
        own=6
    fi
    read -r submitted t_last max_att <<<"$("${PSQL[@]}" -F' ' -c "
        SELECT count(*), extract(epoch FROM max(updated_at)), max(attempts)
          FROM xplenty_queue WHERE id BETWEEN $lo AND $hi AND status = 'submitted'")"
    [ "$submitted" = "$n" ] || die "$submitted of $n submitted"
    c1=$(proc_ticks "$WORKER_PID"); p1=$(proc_ticks "$PEER_PID")
    flush_worker_stats
    x1=$(xact_commits)
    printf '%s drain n=%s lo=%s hi=%s t0=%s t_last=%s t_poll=%s enqueue_ms=%s worker_ticks=%s peer_ticks=%s xacts=%s looks=%s max_attempts=%s waiter=%s\n' \
        "$(date +%T)" "$n" "$lo" "$hi" "$t0" "$t_last" "$t_poll" "$enq_ms" \
        $((c1 - c0)) $((p1 - p0)) $((x1 - x0)) "$looks" "$max_att" "${WAITER:-}" >>"$RUN/drain.log"
    read -r D_RATE D_POLL_RATE D_CPU_US D_CPU_PCT D_PEER_US D_ROUNDS D_ENQ_RATE <<<"$(
        awk -v n="$n" -v t0="$t0" -v tl="$t_last" -v tp="$t_poll" -v c=$((c1 - c0)) \
            -v p=$((p1 - p0)) -v x=$((x1 - x0 - own - looks)) -v hz="$CLK_TCK" -v em="$enq_ms" 'BEGIN {
            s = tl - t0
            printf "%.1f %.1f %.1f %.0f %.1f %d %.1f\n", n / s, n / (tp - t0),
                c * 1e6 / hz / n, 100 * c / hz / s, p * 1e6 / hz / n, x, n / (em / 1000) }')"
}

# mem_read: the worker's memory, kB: VmRSS RssAnon RssShmem Pss Pss_Anon
# Private_Dirty.
mem_read() {
    {
        awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssShmem:/ { s = $2 }
             END { printf "%s %s %s ", r, a, s }' "/proc/$WORKER_PID/status"
        awk '/^Pss:/ { p = $2 } /^Pss_Anon:/ { pa = $2 } /^Private_Dirty:/ { pd = $2 }
             END { printf "%s %s %s\n", p, pa, pd }' "/proc/$WORKER_PID/smaps_rollup"
    }
}

# memctx: pg_log_backend_memory_contexts of the worker, read back from the
# server log: "grand_total_bytes used_bytes request_contexts".
memctx() {
    local size lines
    size=$(stat -c %s "$PG_LOG")
    "${PSQL[@]}" -c "SELECT pg_log_backend_memory_contexts($WORKER_PID)" >/dev/null
    for _ in $(seq 50); do
        lines=$(tail -c +$((size + 1)) "$PG_LOG" | grep -F "[$WORKER_PID]" || true)
        if printf '%s\n' "$lines" | grep -q 'Grand total:'; then
            printf '%s\n' "$lines" >>"$RUN/memory-contexts.log"
            printf '%s\n' "$lines" | awk '
                /Grand total:/ { for (i = 1; i <= NF; i++) {
                    if ($i == "total:") t = $(i + 1); if ($(i) == "used" || $(i) == "used;") u = $(i - 1) } }
                /xplenty request: |xplenty poll: / { r++ }
                END { printf "%s %s %d\n", t, u, r }'
            return 0
        fi
        sleep 0.1
    done
    echo "? ? ?"
}

usage_line() {    # label "vmrss rssanon rssshmem pss pss_anon private_dirty" "total used ctx"
    local m c
    read -r -a m <<<"$2"
    read -r -a c <<<"$3"
    printf '  %-24s VmRSS %6s kB  RssAnon %6s kB  RssShmem %6s kB  Pss %6s kB  Pss_Anon %6s kB  Private_Dirty %6s kB  contexts %s B (%s used, %s request contexts)\n' \
        "$1" "${m[0]}" "${m[1]}" "${m[2]}" "${m[3]}" "${m[4]}" "${m[5]}" "${c[0]}" "${c[1]}" "${c[2]}"
}

# libcurl_rate URL N MODE [K] -> "calls/s cpu_us_per_call" of libcurl_client
libcurl_rate() {
    local out
    out=$("$RUN/libcurl_client" "$1" "$API_KEY" "$2" "${@:3}") || die "libcurl_client ${*:3} failed"
    printf '%s %s\n' "${*:3}" "$out" >>"$RUN/libcurl.log"
    printf '%s\n' "$out" | awk -v n="$2" '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s %.1f\n", v["calls_per_sec"], v["cpu_seconds"] * 1e6 / n }'
}

{
    echo "xplenty queue benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    machine_lines
    echo "peers:    nginx (worker_processes 1) on $API_URL, answering at once;"
    echo "          the test mock ($(basename "$MOCK_PY")) with a ${DELAY_MS} ms delay rule, for the delay phase"
    echo "worker:   pid $WORKER_PID, xplenty.max_in_flight = $DEFAULT_CAP unless said, xplenty.poll_budget = 0,"
    echo "          fsync = off unless said (the worker forces synchronous_commit = on)"
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) at the start (1, 5, 15 min)"
    echo
} >>"$REPORT"
cat "$REPORT" >&2

# ---------------------------------------------------------------- memory
if has_phase memory; then
    say "memory: $MEM_FIRST requests, then $MEM_MORE more in batches of $MEM_BATCH"
    drain "$MEM_FIRST"
    sleep 0.5
    MEM_A=$(mem_read); CTX_A=$(memctx)
    series="$(echo "$MEM_A" | awk '{ print $5 }')"
    done_n=0
    batch_rates=()
    while [ $done_n -lt "$MEM_MORE" ]; do
        b=$((MEM_MORE - done_n < MEM_BATCH ? MEM_MORE - done_n : MEM_BATCH))
        drain "$b"
        batch_rates+=("$D_RATE")
        done_n=$((done_n + b))
        series="$series $(mem_read | awk '{ print $5 }')"
    done
    sleep 0.5
    MEM_B=$(mem_read); CTX_B=$(memctx)
    [ "$(worker_pid)" = "$WORKER_PID" ] || die "the worker restarted during the memory phase"
    report "4. worker memory (pid $WORKER_PID, the same process throughout)" \
        "$(usage_line "after $MEM_FIRST requests:" "$MEM_A" "$CTX_A")" \
        "$(usage_line "after $((MEM_FIRST + MEM_MORE)) requests:" "$MEM_B" "$CTX_B")"
    report "$(paste <(tr ' ' '\n' <<<"$MEM_A") <(tr ' ' '\n' <<<"$MEM_B") | awk '
        { a[NR] = $1; b[NR] = $2 }
        END { printf "  ratio after/before:       VmRSS %.3f  RssAnon %.3f  RssShmem %.3f  Pss %.3f  Pss_Anon %.3f  Private_Dirty %.3f\n",
              b[1]/a[1], b[2]/a[2], b[3]/a[3], b[4]/a[4], b[5]/a[5], b[6]/a[6] }')"
    report "$(awk -v a="${CTX_A%% *}" -v b="${CTX_B%% *}" 'BEGIN { if (a + 0 > 0) printf "  memory contexts, grand total after/before: %.3f\n", b / a }')"
    report "  Pss_Anon (kB) after $MEM_FIRST, then after each batch of $MEM_BATCH: $series"
    report "  drain rate of each batch (requests/s): ${batch_rates[*]}" ""
fi

# ---------------------------------------------------------------- drain
# Each drain starts from a vacuumed and analyzed queue (the rows of earlier
# drains stay, submitted), as autovacuum would keep it; two diagnostics
# show the drain from a truncated queue, which has no statistics, and with
# a session waiting in xplenty_wait() meanwhile.
vacuum_queue() { "${PSQL[@]}" -c 'VACUUM ANALYZE xplenty_queue'; }

diag_row() {    # label: the last drain as a row of the table
    printf '   %-52s %9s %8s  %s\n' "$1" "$D_RATE" "$(usec "$D_RATE")" \
        "worker CPU $D_CPU_US us/request, busy $D_CPU_PCT %, ~$D_ROUNDS rounds" | tee -a "$REPORT" >&2
}

if has_phase drain; then
    say "drain: warm-up round"
    vacuum_queue
    drain $((DRAIN_N / 10))
    libcurl_rate "$JOBS_URL" $((LIBCURL_CALLS / 10)) easy >/dev/null
    declare -a R_DRAIN=() R_POLL=() R_EASY=() R_EASY_CPU=() R_PAR=() R_CPU=() R_PCT=() R_PEER=() R_ROUNDS=() R_ENQ=()
    for r in $(seq "$REPEAT"); do
        read -r rate cpu <<<"$(libcurl_rate "$JOBS_URL" "$LIBCURL_CALLS" easy)"
        R_EASY+=("$rate"); R_EASY_CPU+=("$cpu")
        read -r rate cpu <<<"$(libcurl_rate "$JOBS_URL" "$LIBCURL_CALLS" parallel $DEFAULT_CAP)"
        R_PAR+=("$rate")
        vacuum_queue
        drain "$DRAIN_N"
        R_DRAIN+=("$D_RATE"); R_POLL+=("$D_POLL_RATE"); R_CPU+=("$D_CPU_US")
        R_PCT+=("$D_CPU_PCT"); R_PEER+=("$D_PEER_US"); R_ROUNDS+=("$D_ROUNDS"); R_ENQ+=("$D_ENQ_RATE")
        say "round $r of $REPEAT: drain $D_RATE/s (looks: $D_POLL_RATE/s), libcurl_client easy ${R_EASY[-1]}/s, parallel $DEFAULT_CAP ${R_PAR[-1]}/s; worker CPU $D_CPU_US us/request ($D_CPU_PCT %), ~$D_ROUNDS rounds"
    done
    M_DRAIN=$(echo "${R_DRAIN[*]}" | median); M_EASY=$(echo "${R_EASY[*]}" | median)
    M_PAR=$(echo "${R_PAR[*]}" | median); M_POLL=$(echo "${R_POLL[*]}" | median)
    M_CPU=$(echo "${R_CPU[*]}" | median); M_PCT=$(echo "${R_PCT[*]}" | median)
    M_PEER=$(echo "${R_PEER[*]}" | median); M_ROUNDS=$(echo "${R_ROUNDS[*]}" | median)
    M_ENQ=$(echo "${R_ENQ[*]}" | median); M_EASY_CPU=$(echo "${R_EASY_CPU[*]}" | median)
    R1=$(ratio "$M_DRAIN" "$M_EASY")
    R1_CPU=$(ratio "$M_EASY_CPU" "$M_CPU")
    report "1. drain against nginx answering at once: $DRAIN_N requests queued in one transaction," \
        "   max_in_flight $DEFAULT_CAP; median of $REPEAT rounds (each round: libcurl_client, then the drain)"
    printf '   %-52s %9s %8s  %s\n' "measurement" "req/s" "us/req" "each round" | tee -a "$REPORT" >&2
    printf '   %-52s %9s %8s  %s\n' "worker drain (commit -> last submitted row)" "$M_DRAIN" "$(usec "$M_DRAIN")" "${R_DRAIN[*]}" | tee -a "$REPORT" >&2
    printf '   %-52s %9s %8s  %s\n' "worker drain (commit -> a look saw all, 50 ms apart)" "$M_POLL" "$(usec "$M_POLL")" "${R_POLL[*]}" | tee -a "$REPORT" >&2
    printf '   %-52s %9s %8s  %s\n' "libcurl_client easy (one connection, one at a time)" "$M_EASY" "$(usec "$M_EASY")" "${R_EASY[*]}" | tee -a "$REPORT" >&2
    printf '   %-52s %9s %8s  %s\n' "diagnostic: libcurl_client parallel $DEFAULT_CAP" "$M_PAR" "$(usec "$M_PAR")" "${R_PAR[*]}" | tee -a "$REPORT" >&2
    report "   drain / libcurl_client easy = $R1   (target >= $T_DRAIN: $(awk -v r="$R1" -v t="$T_DRAIN" 'BEGIN { print (r >= t) ? "meets" : "MISSES" }'))" \
        "   within each round: $(paste -d' ' <(printf '%s\n' "${R_DRAIN[@]}") <(printf '%s\n' "${R_EASY[@]}") | awk '{ printf "%.3f ", $1 / $2 }')" \
        "   worker CPU: $M_CPU us per request, busy $M_PCT % of the drain; $PEER_NAME CPU: $M_PEER us per request" \
        "   CPU time per request, which other load on the machine disturbs less than rates: worker $M_CPU us," \
        "   libcurl_client easy $M_EASY_CPU us (rounds: ${R_EASY_CPU[*]}); libcurl_client / worker = $R1_CPU" \
        "   (the drain ratio if both had their CPU to themselves; a lower bound, as libcurl_client also waits for nginx)" \
        "   worker transactions (rounds): about $M_ROUNDS for $DRAIN_N requests, $(awk -v n="$DRAIN_N" -v r="$M_ROUNDS" 'BEGIN { printf "%.1f", n / r }') requests per round" \
        "   the enqueue SELECT of the drain: $M_ENQ calls/s" \
        "   diagnostics, one drain each:"
    "${PSQL[@]}" -c 'TRUNCATE xplenty_queue'
    drain "$DRAIN_N"
    diag_row "from a truncated queue (no statistics)"
    vacuum_queue
    WAITER=1 drain "$DRAIN_N"
    diag_row "while a session waits in xplenty_wait()"
    set_worker xplenty.max_in_flight 64
    vacuum_queue
    drain "$DRAIN_N"
    diag_row "max_in_flight = 64"
    set_worker xplenty.max_in_flight default
    if [ "$FSYNC_N" -gt 0 ]; then
        set_worker fsync on
        vacuum_queue
        drain "$FSYNC_N"
        diag_row "fsync = on ($FSYNC_N requests)"
        set_worker fsync default
    fi
    report ""
fi

# ---------------------------------------------------------------- delay
if has_phase delay; then
    mkdir -p "$RUN/mock"
    "${PIN_SERVER[@]}" /usr/bin/python3 "$MOCK_PY" --port 0 --port-file "$RUN/mock/port" \
        --account "$ACCOUNT" --api-key "$API_KEY" --rate-limit 1000000000 \
        >"$RUN/mock/mock.log" 2>&1 &
    MOCK_PID=$!
    EXTRA_PIDS+=("$MOCK_PID")
    for _ in $(seq 100); do [ -s "$RUN/mock/port" ] && break; sleep 0.1; done
    [ -s "$RUN/mock/port" ] || die "the mock did not start: $(cat "$RUN/mock/mock.log")"
    MOCK_URL="http://127.0.0.1:$(cat "$RUN/mock/port")"
    curl -sf -X POST -d "{\"method\": \"POST\", \"path\": \"^/jobs\$\", \"create\": true, \"delay_ms\": $DELAY_MS, \"times\": -1}" \
        "$MOCK_URL/_mock/faults" >/dev/null || die "could not add the mock's delay rule"
    PEER_PID=$MOCK_PID
    PEER_NAME=mock
    set_worker xplenty.api_url "$MOCK_URL"
    report "2. drain against the mock answering POST /jobs after $DELAY_MS ms (job created, then the delay)"
    printf '   %-14s %8s %8s %10s %8s %10s %12s  %s\n' "max_in_flight" "requests" "ideal/s" "drain/s" "ratio" "peer: libcurl" "worker CPU" "verdict (>= $T_DELAY)" | tee -a "$REPORT" >&2
    for cap in $CAPS; do
        ideal=$(awk -v c="$cap" -v d="$DELAY_MS" 'BEGIN { printf "%.1f", c * 1000 / d }')
        n=$(awk -v i="$ideal" -v s="$DELAY_SECONDS" 'BEGIN { printf "%d", i * s }')
        # What the mock sustains with cap requests in flight from one client.
        read -r peer _ <<<"$(libcurl_rate "$MOCK_URL/$ACCOUNT/api/jobs" $((n / 2 / cap * cap)) parallel "$cap")"
        set_worker xplenty.max_in_flight "$cap"
        vacuum_queue
        drain "$n"
        r=$(ratio "$D_RATE" "$ideal")
        printf '   %-14s %8s %8s %10s %8s %10s/s %9s us  %s\n' "$cap" "$n" "$ideal" "$D_RATE" "$r" "$peer" "$D_CPU_US" \
            "$(awk -v r="$r" -v t="$T_DELAY" 'BEGIN { print (r >= t) ? "meets" : "MISSES" }')" | tee -a "$REPORT" >&2
    done
    report "   (ideal = max_in_flight / delay; peer: libcurl = libcurl_client parallel, max_in_flight at once, against the same mock)"
    set_worker xplenty.api_url default xplenty.max_in_flight default
    stats=$(curl -s "$MOCK_URL/_mock/stats")
    report "   mock: $(printf '%s' "$stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("%d POST /jobs, %d jobs created, %d requests in all" % (s["run_job_posts"], s["jobs_created"], s["requests"]))')" ""
    stop_pid "$MOCK_PID" TERM
    PEER_PID=$NGINX_WORKER
    PEER_NAME=nginx
fi

# ---------------------------------------------------------------- trigger
if has_phase trigger; then
    say "trigger: $TRIG_REPEAT INSERTs of $TRIG_ROWS rows with and without the statement trigger"
    "${PSQL_TRIG[@]}" <<'EOF'
CREATE TABLE t_plain (id int, payload text);
CREATE TABLE t_stmt (id int, payload text);
CREATE TABLE t_row (id int, payload text);
CREATE TRIGGER enqueue AFTER INSERT ON t_stmt
    FOR EACH STATEMENT EXECUTE FUNCTION xplenty_enqueue_job_trigger(52, 434);
CREATE TRIGGER enqueue AFTER INSERT ON t_row
    FOR EACH ROW EXECUTE FUNCTION xplenty_enqueue_job_trigger(52, 434);
EOF
    INSERT_SQL="SELECT g, 'row ' || g FROM generate_series(1, $TRIG_ROWS) g"
    # One session; each INSERT into a table just truncated, timed by psql
    # with its commit (autocommit: plain, stmt), and, as a diagnostic, alone
    # inside BEGIN ... COMMIT (plain_tx, stmt_tx: without the commit, and so
    # without the worker's wake-up at commit).  The kinds alternate which
    # goes first; the first round is a warm-up.
    {
        echo '\timing off'
        for r in $(seq 0 "$TRIG_REPEAT"); do
            if [ $((r % 2)) -eq 0 ]; then order="plain stmt stmt_tx plain_tx"
            else order="stmt plain plain_tx stmt_tx"; fi
            for k in $order; do
                t=${k%_tx}
                echo "TRUNCATE t_$t;"
                [ "$k" = "$t" ] || echo "BEGIN;"
                echo "\\echo @$k $r"
                echo '\timing on'
                echo "INSERT INTO t_$t $INSERT_SQL;"
                echo '\timing off'
                [ "$k" = "$t" ] || echo "COMMIT;"
            done
        done
    } >"$RUN/trigger-stmt.sql"
    "${PSQL_TRIG[@]}" -f "$RUN/trigger-stmt.sql" >"$RUN/trigger-stmt.out"
    # trig_medians A B [FILE]: "median(A) median(B) median(B/A, paired)" of
    # two kinds' timings in psql's output
    trig_medians() {
        awk -v a="$1" -v b="$2" '
            /^@/ { t = substr($1, 2); r = $2 }
            /^Time:/ && r > 0 { ms[t, r] = $2; if (r > k) k = r }
            END {
                for (i = 1; i <= k; i++) { x[i] = ms[a, i]; y[i] = ms[b, i]; q[i] = y[i] / x[i] }
                printf "%s %s %.3f\n", med(x, k), med(y, k), med(q, k) }
            function med(v, n,   i, j, t) {
                for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
                return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }' "${3:-$RUN/trigger-stmt.out}"
    }
    read -r M_PLAIN M_STMT M_PAIR <<<"$(trig_medians plain stmt)"
    read -r M_PLAIN_TX M_STMT_TX M_PAIR_TX <<<"$(trig_medians plain_tx stmt_tx)"
    R3=$(ratio "$M_STMT" "$M_PLAIN")
    R3_TX=$(ratio "$M_STMT_TX" "$M_PLAIN_TX")
    report "3. enqueuing in a trigger (database trig, which no worker serves)" \
        "   INSERT of $TRIG_ROWS rows, median of $TRIG_REPEAT each (table truncated before each; kinds alternating):" \
        "     without a trigger:                         $M_PLAIN ms" \
        "     with the statement trigger (one request):  $M_STMT ms" \
        "     ratio of medians $R3, median of the paired ratios $M_PAIR   (target < $T_TRIGGER: $(awk -v r="$R3" -v t="$T_TRIGGER" 'BEGIN { print (r < t) ? "meets" : "MISSES" }'))" \
        "     diagnostic, the INSERT alone inside BEGIN ... COMMIT: $M_PLAIN_TX ms against $M_STMT_TX ms," \
        "     ratio of medians $R3_TX, median of the paired ratios $M_PAIR_TX"

    # The same with the worker stopped (SIGSTOP): the wake-up at each
    # commit then runs no round of the worker on the CPU the INSERTs use.
    kill -STOP "$WORKER_PID"
    STOPPED_PIDS+=("$WORKER_PID")
    "${PSQL_TRIG[@]}" -f "$RUN/trigger-stmt.sql" >"$RUN/trigger-stmt-stopped.out"
    kill -CONT "$WORKER_PID"
    STOPPED_PIDS=()
    read -r M_PLAIN_S M_STMT_S M_PAIR_S <<<"$(trig_medians plain stmt "$RUN/trigger-stmt-stopped.out")"
    report "     diagnostic, the same with the worker stopped (SIGSTOP), so that no round of it runs after each commit:" \
        "     $M_PLAIN_S ms against $M_STMT_S ms, ratio of medians $(ratio "$M_STMT_S" "$M_PLAIN_S"), median of the paired ratios $M_PAIR_S"

    # The statement trigger's own cost, without the noise of 10,000 rows:
    # 3000 one-row INSERTs in one DO block (one transaction), each way.
    {
        echo '\timing off'
        for r in 0 1 2 3 4 5; do
            for t in plain stmt; do
                echo "TRUNCATE t_$t;"
                echo "\\echo @$t $r"
                echo '\timing on'
                echo "DO \$\$ BEGIN FOR i IN 1..3000 LOOP INSERT INTO t_$t VALUES (i, 'x'); END LOOP; END \$\$;"
                echo '\timing off'
            done
        done
    } >"$RUN/trigger-one.sql"
    "${PSQL_TRIG[@]}" -f "$RUN/trigger-one.sql" >"$RUN/trigger-one.out"
    read -r M_ONE_PLAIN M_ONE_STMT _ <<<"$(trig_medians plain stmt "$RUN/trigger-one.out")"
    report "     diagnostic, 3000 one-row INSERTs in one transaction, median of 5: $M_ONE_PLAIN ms without, $M_ONE_STMT ms with" \
        "     the statement trigger: $(awk -v a="$M_ONE_PLAIN" -v b="$M_ONE_STMT" 'BEGIN { printf "%.1f", (b - a) * 1000 / 3000 }') us a statement, $(awk -v a="$M_ONE_PLAIN" -v b="$M_ONE_STMT" -v p="$M_PLAIN" 'BEGIN { printf "%.1f", (b - a) / 3000 / p * 100 }') % of the ${TRIG_ROWS}-row INSERT"

    say "trigger: $ROW_REPEAT INSERTs of $TRIG_ROWS rows with the row trigger, $ROW_REPEAT x $ENQ_CALLS direct calls"
    {
        echo '\timing off'
        for r in $(seq 0 "$ROW_REPEAT"); do
            echo "TRUNCATE t_row, xplenty_queue;"
            echo "\\echo @row $r"
            echo '\timing on'
            echo "INSERT INTO t_row $INSERT_SQL;"
            echo '\timing off'
            echo "TRUNCATE xplenty_queue;"
            echo "\\echo @call $r"
            echo '\timing on'
            echo "SELECT count(xplenty_enqueue_job(52, 434)) FROM generate_series(1, $ENQ_CALLS);"
            echo '\timing off'
        done
        echo "SELECT count(*) FROM xplenty_queue;"
    } >"$RUN/trigger-row.sql"
    "${PSQL_TRIG[@]}" -f "$RUN/trigger-row.sql" >"$RUN/trigger-row.out"
    [ "$(tail -1 "$RUN/trigger-row.out")" = "$ENQ_CALLS" ] || die "direct calls did not queue $ENQ_CALLS rows"
    M_ROW=$(awk '/^@/ { t = substr($1, 2); r = $2 } /^Time:/ && r > 0 && t == "row" { print $2 }' "$RUN/trigger-row.out" | median)
    M_CALL=$(awk '/^@/ { t = substr($1, 2); r = $2 } /^Time:/ && r > 0 && t == "call" { print $2 }' "$RUN/trigger-row.out" | median)
    report "   INSERT of $TRIG_ROWS rows with the row trigger (one request a row), median of $ROW_REPEAT:" \
        "     $M_ROW ms: $(awk -v n="$TRIG_ROWS" -v ms="$M_ROW" 'BEGIN { printf "%.0f", n / (ms / 1000) }') rows (requests) a second; $(awk -v n="$TRIG_ROWS" -v ms="$M_ROW" -v p="$M_PLAIN" 'BEGIN { printf "%.1f", (ms - p) * 1000 / n }') us a row more than without a trigger" \
        "   SELECT count(xplenty_enqueue_job(52, 434)) FROM generate_series(1, $ENQ_CALLS), median of $ROW_REPEAT:" \
        "     $M_CALL ms: $(awk -v n="$ENQ_CALLS" -v ms="$M_CALL" 'BEGIN { printf "%.0f", n / (ms / 1000) }') calls a second, $(awk -v n="$ENQ_CALLS" -v ms="$M_CALL" 'BEGIN { printf "%.1f", ms * 1000 / n }') us a call" ""
fi

# ---------------------------------------------------------------- diagnostics
# PERF=1: where the worker's CPU goes during one drain.
if [ -n "${PERF:-}" ] && command -v perf >/dev/null; then
    PERF_HZ=2000
    vacuum_queue
    perf record -q -g -F $PERF_HZ -p "$WORKER_PID" -o "$RUN/perf-worker.data" \
        >"$RUN/perf-worker.log" 2>&1 &
    perf_pid=$!
    sleep 0.5
    drain "$DRAIN_N"
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    {
        echo "worker under perf: $D_RATE requests/s; its CPU per request by library:"
        perf report -i "$RUN/perf-worker.data" --stdio --no-children \
            --sort dso -g none -F sample,dso 2>/dev/null | grep -v '^#' | grep . |
            awk -v hz=$PERF_HZ -v n="$DRAIN_N" '{ t += $1; printf "  %-28s %6.1f us\n", $2, $1 * 1e6 / hz / n }
                END { printf "  %-28s %6.1f us\n", "total", t * 1e6 / hz / n }'
        echo "functions, % of the worker's samples, callers included (call chains"
        echo "through libraries without frame pointers, e.g. libcurl, are cut short):"
        perf report -i "$RUN/perf-worker.data" --stdio --children \
            --percentage relative --sort sym -g none --percent-limit 2 2>/dev/null |
            grep -F '[' | grep -v '\] 0x0' | head -60
        echo "functions, self time, % of the worker's samples:"
        perf report -i "$RUN/perf-worker.data" --stdio --no-children \
            --percentage relative --sort dso,sym -g none --percent-limit 0.7 2>/dev/null |
            grep -F '[' | head -40
    } >"$RUN/perf-worker.txt"
    say "profile of the worker: $RUN/perf-worker.txt"

    # A backend calling xplenty_enqueue_job ENQ_CALLS times (database trig).
    if [ -n "$CLIENT_CPU" ]; then
        "${PSQL_TRIG[@]}" -c 'TRUNCATE xplenty_queue' \
            -c "SELECT count(xplenty_enqueue_job(52, 434)) FROM generate_series(1, 1000)" >/dev/null
        perf record -q -g -F $PERF_HZ -C "$CLIENT_CPU" -o "$RUN/perf-enqueue.data" \
            >"$RUN/perf-enqueue.log" 2>&1 &
        perf_pid=$!
        sleep 0.5
        "${PSQL_TRIG[@]}" -c "SELECT count(xplenty_enqueue_job(52, 434)) FROM generate_series(1, $ENQ_CALLS)" >/dev/null
        kill -INT "$perf_pid"; wait "$perf_pid" || true
        {
            echo "a backend running SELECT count(xplenty_enqueue_job(52, 434)) FROM generate_series(1, $ENQ_CALLS)"
            echo "under perf; functions, % of the backends' samples, callers included:"
            perf report -i "$RUN/perf-enqueue.data" --stdio --children --comms postgres \
                --percentage relative --sort sym -g none --percent-limit 2.5 2>/dev/null |
                grep -F '[' | grep -v '\] 0x0' | head -50
        } >"$RUN/perf-enqueue.txt"
        say "profile of xplenty_enqueue_job: $RUN/perf-enqueue.txt"
    fi
fi

# STATEMENTS=1: restart with pg_stat_statements (planning tracked too) and
# auto_explain (plans of statements over 1 ms); each of the worker's
# statements (they run at top level, through SPI) during one drain, and the
# plans its slow claims ran with.
if [ -n "${STATEMENTS:-}" ]; then
    sed -i "s/^shared_preload_libraries = 'xplenty'$/shared_preload_libraries = 'xplenty, pg_stat_statements, auto_explain'/" \
        "$RUN/pg/data/postgresql.conf"
    printf '%s\n' "pg_stat_statements.track = top" "pg_stat_statements.track_utility = off" \
        "pg_stat_statements.track_planning = on" "auto_explain.log_min_duration = '1ms'" \
        >>"$RUN/pg/data/postgresql.conf"
    stop_cluster "$RUN/pg/data"
    start_cluster "$RUN/pg/data" "$SERVER_BINARY"
    WORKER_PID=$(worker_pid)
    check_worker_library
    "${PSQL[@]}" -c 'CREATE EXTENSION pg_stat_statements'
    vacuum_queue
    drain $((DRAIN_N / 10))
    vacuum_queue
    "${PSQL[@]}" -c 'SELECT pg_stat_statements_reset()' >/dev/null
    log_from=$(stat -c %s "$PG_LOG")
    drain "$DRAIN_N"
    WORKER_FILTER="query ~ 'xplenty_queue|pg_notify' AND query !~ 'generate_series|BETWEEN|pg_stat_statements'"
    {
        echo "the worker's statements during a drain of $DRAIN_N requests ($D_RATE requests/s with pg_stat_statements"
        echo "and auto_explain loaded; worker CPU $D_CPU_US us a request):"
        echo "calls | plans | rows | exec us per request | plan us per request | exec us per call | statement"
        "${PSQL[@]}" -F' | ' -c "
            SELECT calls, plans, rows, round((total_exec_time * 1000 / $DRAIN_N)::numeric, 1),
                   round((total_plan_time * 1000 / $DRAIN_N)::numeric, 1),
                   round((mean_exec_time * 1000)::numeric, 1),
                   regexp_replace(left(query, 80), '\s+', ' ', 'g')
              FROM pg_stat_statements WHERE $WORKER_FILTER
             ORDER BY total_exec_time DESC"
        echo "sum per request (us): $("${PSQL[@]}" -F' ' -c "
            SELECT 'exec', round((sum(total_exec_time) * 1000 / $DRAIN_N)::numeric, 1),
                   'plan', round((sum(total_plan_time) * 1000 / $DRAIN_N)::numeric, 1)
              FROM pg_stat_statements WHERE $WORKER_FILTER")"
        echo "claims that took over 1 ms, by the plan auto_explain logged (sends: SET status = 'submitting';"
        echo "checks: SET checks = checks + 1, which looks for status = 'checking'):"
        tail -c +$((log_from + 1)) "$PG_LOG" | awk -v pid="[$WORKER_PID]" '
            function emit() {
                if (kind != "") {
                    n[kind]++; t[kind] += ms
                    shape = bitmap ? "bitmap heap scan" (sorted ? " + sort" : "") : idx ? "ordered scan of xplenty_queue_due_idx" : seq ? "seq scan" : "other"
                    c[kind, shape]++; shapes[shape] = 1
                }
                kind = ""
            }
            index($0, pid) && /duration: .* ms  plan:/ { emit(); ms = $0; sub(/.*duration: /, "", ms); sub(/ ms.*/, "", ms);
                                     inplan = 1; bitmap = idx = seq = sorted = 0; next }
            !/^\t/ { if (inplan) emit(); inplan = 0; next }
            inplan && /Query Text: UPDATE .* SET status = .submitting./ { kind = "sends" }
            inplan && /Query Text: UPDATE .* SET checks = checks/ { kind = "checks" }
            inplan && /Bitmap Heap Scan on xplenty_queue/ { bitmap = 1 }
            inplan && /Index Scan using xplenty_queue_due_idx/ { idx = 1 }
            inplan && /Seq Scan on xplenty_queue/ { seq = 1 }
            inplan && /-> +Sort / { sorted = 1 }
            END {
                emit()
                for (k in n) {
                    line = sprintf("  %s: %d over 1 ms, %.0f ms in all:", k, n[k], t[k])
                    for (sh in shapes) if (c[k, sh]) line = line sprintf(" %d %s;", c[k, sh], sh)
                    print line
                }
                if (length(n) == 0) print "  none"
            }'
    } >"$RUN/statements.txt"
    say "statements of the worker: $RUN/statements.txt"
fi

report "load: $(cut -d' ' -f1-3 /proc/loadavg) at the end (1, 5, 15 min)" ""
for f in perf-worker.txt perf-enqueue.txt statements.txt; do
    if [ -f "$RUN/$f" ]; then { echo "---- $f"; cat "$RUN/$f"; echo; } >>"$REPORT"; fi
done
cp "$REPORT" "$RESULTS"
say "results written to $RESULTS"
