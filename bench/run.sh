#!/usr/bin/env bash
#
# bench/run.sh - calls per second of xplenty_run_job() against a minimal
# libcurl program and against one `curl` command per call, side by side in
# one run, on loopback, against nginx answering 201 with a canned job.
#
# usage: sudo bench/run.sh
#
# Knobs (environment):
#   SQL_CALLS=20000 LIBCURL_CALLS=20000 CMD_CALLS=300   calls per measurement
#   REPEAT=3        rounds after the warm-up one; medians are reported
#   PAIRS=20 PAIR_CALLS=2000   the interleaved measurement: short runs of
#                   the extension and libcurl_client easy taking turns
#   SKIP_BUILD=1    use the installed extension, do not make && make install
#   BUILD_FROM=rev  build that commit (git archive into the run directory)
#                   instead of the working tree, and load it from there
#                   without installing it
#   PATCH=file      with BUILD_FROM: apply this -p1 patch to that copy
#   PERF=1          also profile one run of each with perf (needs perf)
#   KEEP=1          keep the throwaway cluster's data directory
#
# Everything it starts (a PostgreSQL cluster owned by the postgres OS user,
# an nginx) lives under bench/out/run-<stamp>/ and is stopped on exit,
# failure or Ctrl-C.  Results go to bench/out/results-<stamp>.txt.

set -euo pipefail
shopt -s inherit_errexit

SQL_CALLS=${SQL_CALLS:-20000}
LIBCURL_CALLS=${LIBCURL_CALLS:-20000}
CMD_CALLS=${CMD_CALLS:-300}
REPEAT=${REPEAT:-3}
TARGET=0.8

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=run.sh
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

require_root
ensure_packages postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev \
    nginx curl gcc make
make_run_dir
RESULTS=$OUT/results-$STAMP.txt
bench_traps

# ---------------------------------------------------------------- build
resolve_source
# A build of the working tree is installed (make install) and loaded as
# 'xplenty' with CREATE EXTENSION.  A BUILD_FROM build is not installed:
# the throwaway cluster finds it first on dynamic_library_path and gets
# xplenty_run_job() from it with CREATE FUNCTION, so the system's installed
# copy (which a developer may be testing) is left alone.
if [ -n "${BUILD_FROM:-}" ]; then
    say "building the extension from $SOURCE_DESC, not installing it (log: $RUN/build.log)"
    make_ext
    # Found first through dynamic_library_path, so that the background
    # worker, which loads the library by name, gets this copy too.
    LIB_DIR=$BUILD_DIR
    SOURCE_DESC="$SOURCE_DESC, loaded from $LIB_DIR/xplenty.so"
elif [ -z "${SKIP_BUILD:-}" ]; then
    say "building and installing the extension from $SOURCE_DESC (log: $RUN/build.log)"
    make_ext
    make_ext install
    LIB_DIR=
else
    SOURCE_DESC="the installed extension (SKIP_BUILD); tree: $SOURCE_DESC"
    LIB_DIR=
fi
build_libcurl_client

# ---------------------------------------------------------------- servers
setup_pinning
start_nginx

# ---------------------------------------------------------------- PostgreSQL
start_run_job_cluster


# ---------------------------------------------------------------- measurements
# Each prints "calls_per_sec connections", connections being how many TCP
# connections nginx accepted for the measurement (warm-up call included).

conns_between() {    # "accepts requests" before, after; the second status call is one
    awk -v b="$1" -v a="$2" 'BEGIN { split(b, B, " "); split(a, A, " "); print A[1] - B[1] - 1 }'
}

# One new session: one untimed call opens the kept-alive connection, then
# the timed statement; psql's \timing is the statement's whole time.
measure_sql() {
    local n=$1 out ms before after
    before=$(nginx_counters)
    out=$("${PSQL[@]}" <<EOF
SELECT xplenty_run_job(52, 434) IS NOT NULL;
\timing on
SELECT count(xplenty_run_job(52, 434)) FROM generate_series(1, $n);
EOF
)
    after=$(nginx_counters)
    printf '%s\n' "$out" >>"$RUN/sql.log"
    ms=$(printf '%s\n' "$out" | statement_ms)
    [ "$(printf '%s\n' "$out" | sed -n 2p)" = "$n" ] && [ -n "$ms" ] \
        || die "unexpected psql output: $out"
    awk -v n="$n" -v ms="$ms" -v c="$(conns_between "$before" "$after")" \
        'BEGIN { printf "%.1f %d\n", n / (ms / 1000), c }'
}

# mode easy: the practical limit; easy-headers: the same with User-Agent
# and Authorization made once, as the extension sends them; mode multi:
# the extension's HTTP path without PostgreSQL (see libcurl_client.c).
measure_libcurl() {
    local n=$1 mode=$2 out before after
    before=$(nginx_counters)
    out=$("$RUN/libcurl_client" "$JOBS_URL" "$API_KEY" "$n" "$mode") || die "libcurl_client $mode failed"
    after=$(nginx_counters)
    printf '%s %s\n' "$mode" "$out" >>"$RUN/libcurl.log"
    printf '%s\n' "$out" | sed -n 's/.*calls_per_sec=\([0-9.]*\).*/\1/p' \
        | awk -v c="$(conns_between "$before" "$after")" '{ print $1, c }'
}

# What a shell script does: one curl process, one connection, per call.
measure_cmd() {
    local n=$1 t0 t1 ok before after codes=$RUN/curl_codes.txt
    : >"$codes"
    before=$(nginx_counters)
    t0=$(date +%s.%N)
    for ((i = 0; i < n; i++)); do
        curl -s -o /dev/null -w '%{http_code}\n' -X POST -u "$API_KEY:" \
            -H 'Accept: application/vnd.xplenty+json; version=2' \
            -H 'Content-Type: application/json' \
            -d "$JOB_BODY" "$JOBS_URL" >>"$codes"
    done
    t1=$(date +%s.%N)
    after=$(nginx_counters)
    ok=$(grep -c '^201$' "$codes" || true)
    [ "$ok" = "$n" ] || die "curl loop: $ok of $n answers were 201"
    awk -v n="$n" -v t0="$t0" -v t1="$t1" -v c="$(conns_between "$before" "$after")" \
        'BEGIN { printf "%.1f %d\n", n / (t1 - t0), c }'
}

# Diagnostic, no HTTP: jsonb_in of the same answer body, once a row (the
# appended blank keeps the planner from folding the cast into a constant).
measure_parse() {
    local n=$1 out ms
    out=$("${PSQL[@]}" <<EOF
\timing on
SELECT count((j || repeat(' ', g % 2))::jsonb)
  FROM generate_series(1, $n) g, (SELECT \$job\$$JOB_ANSWER\$job\$::text AS j) s;
EOF
)
    ms=$(printf '%s\n' "$out" | statement_ms)
    [ -n "$ms" ] || die "unexpected psql output: $out"
    awk -v n="$n" -v ms="$ms" 'BEGIN { printf "%.1f 0\n", n / (ms / 1000) }'
}

run_one() {    # name -> "calls_per_sec connections"
    case $1 in
        sql)     measure_sql "$SQL_CALLS" ;;
        easy)    measure_libcurl "$LIBCURL_CALLS" easy ;;
        easyh)   measure_libcurl "$LIBCURL_CALLS" easy-headers ;;
        multi)   measure_libcurl "$LIBCURL_CALLS" multi ;;
        cmd)     measure_cmd "$CMD_CALLS" ;;
        parse)   measure_parse "$SQL_CALLS" ;;
    esac
}

NAMES=(sql easy easyh multi cmd parse)
declare -A RATES=() CONNS=() MED=()

say "warm-up round (discarded)"
measure_sql $((SQL_CALLS / 10)) >/dev/null
measure_libcurl $((LIBCURL_CALLS / 10)) easy >/dev/null
measure_libcurl $((LIBCURL_CALLS / 10)) easy-headers >/dev/null
measure_libcurl $((LIBCURL_CALLS / 10)) multi >/dev/null
measure_cmd $((CMD_CALLS / 10 + 1)) >/dev/null

for r in $(seq "$REPEAT"); do
    line="round $r of $REPEAT:"
    for name in "${NAMES[@]}"; do
        res=$(run_one "$name")
        read -r rate conns <<<"$res"
        RATES[$name]="${RATES[$name]:-} $rate"
        CONNS[$name]="${CONNS[$name]:-} $conns"
        line="$line $name $rate/s"
    done
    say "$line"
done
for name in "${NAMES[@]}"; do MED[$name]=$(printf '%s\n' "${RATES[$name]}" | median); done

# Interleaved: PAIRS short runs of each, xplenty_run_job() and libcurl_client
# easy taking turns, so that both see the same phases of a machine whose
# speed drifts by a third within a round (the parse row, pure CPU, shows
# it).  One psql session runs all the SQL runs, and libcurl_client between
# them through \!, so that the backend, its caches and its connection are
# as warm as in the rounds.  The ratio is of the total calls per total
# time; the median of the pairs' ratios is given beside it.
PAIRS=${PAIRS:-20}
PAIR_CALLS=${PAIR_CALLS:-2000}
say "interleaved: $PAIRS pairs of $PAIR_CALLS calls"
{
    echo "SELECT xplenty_run_job(52, 434) IS NOT NULL;"
    echo "\\timing on"
    for _ in $(seq "$PAIRS"); do
        echo "SELECT count(xplenty_run_job(52, 434)) FROM generate_series(1, $PAIR_CALLS);"
        echo "\\! $RUN/libcurl_client $JOBS_URL $API_KEY $PAIR_CALLS easy"
    done
} >"$RUN/pairs.sql"
chmod 644 "$RUN/pairs.sql"
chmod 755 "$RUN/libcurl_client"
"${PSQL[@]}" -f "$RUN/pairs.sql" >"$RUN/pairs.log" || die "interleaved run failed; see $RUN/pairs.log"
# (psql may write its Time: lines after the output of the next \!, so
# the two kinds of line are paired by their order among their own kind.)
read -r R_PAIRED PAIR_RATIOS <<<"$(awk -v n="$PAIR_CALLS" '
    /^Time:/ { ns++; rs[ns] = n / ($2 / 1000) }
    /calls_per_sec=/ {
        match($0, /calls_per_sec=[0-9.]+/); ne++; re[ne] = substr($0, RSTART + 14, RLENGTH - 14) }
    END {
        if (ns != ne || ns == 0) { print "0 unpaired"; exit }
        for (k = 1; k <= ns; k++) { ts += n / rs[k]; te += n / re[k] }
        printf "%.3f", te / ts
        for (k = 1; k <= ns; k++) printf " %.3f", rs[k] / re[k] }' "$RUN/pairs.log")"
[ "$R_PAIRED" != 0 ] || die "interleaved run: the runs do not pair up; see $RUN/pairs.log"
R_PAIRED_MED=$(printf '%s\n' "$PAIR_RATIOS" | median)
PAIR_RATIOS=" $(printf '%s\n' $PAIR_RATIOS | sort -g | paste -sd' ')"

# PERF=1: one more xplenty_run_job() and libcurl_client run, each under
# perf record on the client CPU; CPU time per call by library (and the
# functions that take most, callers included) goes to $RUN/perf-*.txt.
if [ -n "${PERF:-}" ] && command -v perf >/dev/null && [ -n "${CLIENT_CPU:-}" ]; then
    PERF_HZ=2000
    for name in sql easy multi; do
        case $name in sql) comm=postgres n=$SQL_CALLS ;; *) comm=libcurl_client n=$LIBCURL_CALLS ;; esac
        perf record -q -C "$CLIENT_CPU" -g -F $PERF_HZ -o "$RUN/perf-$name.data" \
            >"$RUN/perf-$name.log" 2>&1 &
        perf_pid=$!
        sleep 0.5
        res=$(run_one "$name")
        kill -INT "$perf_pid"; wait "$perf_pid" || true
        {
            echo "$name under perf: ${res%% *} calls/s; $comm's CPU per call by library:"
            # (not --comms with --sort dso: perf 6.1 then drops the kernel's line)
            perf report -i "$RUN/perf-$name.data" --stdio --no-children \
                --sort comm,dso -g none -F sample,comm,dso 2>/dev/null | grep -v '^#' |
                awk -v c="$comm" -v hz=$PERF_HZ -v n="$n" '$2 == c {
                        t += $1; printf "  %-24s %6.1f us\n", $3, $1 * 1e6 / hz / n }
                    END { printf "  %-24s %6.1f us\n", "total", t * 1e6 / hz / n }'
            echo "user-space functions, % of $comm's samples, callers included (call"
            echo "chains through libraries without frame pointers, e.g. libcurl, are cut short):"
            perf report -i "$RUN/perf-$name.data" --stdio --children --comms "$comm" \
                --percentage relative --sort sym -g none --percent-limit 1.5 2>/dev/null |
                grep -F '[.]' | grep -v '\] 0x0'
        } >"$RUN/perf-$name.txt"
        say "profile of $name: $RUN/perf-$name.txt"
    done
fi

R_LIBCURL=$(ratio "${MED[sql]}" "${MED[easy]}")
R_EASYH=$(ratio "${MED[sql]}" "${MED[easyh]}")
R_CMD=$(ratio "${MED[sql]}" "${MED[cmd]}")
VERDICT=$(awk -v r="$R_LIBCURL" -v t="$TARGET" 'BEGIN { print (r >= t) ? "meets" : "MISSES" }')
US_SQL=$(usec "${MED[sql]}") US_EASY=$(usec "${MED[easy]}")
US_MULTI=$(usec "${MED[multi]}") US_PARSE=$(usec "${MED[parse]}")

row() {    # label name calls
    printf '%-46s %6s %9s %8s  %s\n' "$1" "$3" "${MED[$2]}" "$(usec "${MED[$2]}")" \
        "$(paste -d';' <(printf '%s\n' ${RATES[$2]}) <(printf '%s\n' ${CONNS[$2]}) | tr '\n' ' ')"
}

# ---------------------------------------------------------------- report
{
    echo "xplenty benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    machine_lines
    echo "peer:     nginx, worker_processes 1, on $API_URL (loopback, plain HTTP)"
    echo "rounds:   $REPEAT, after one warm-up round, each running all measurements side by side; median shown"
    echo
    printf '%-46s %6s %9s %8s  %s\n' "measurement" "calls" "calls/s" "us/call" "each round: calls/s;TCP connections (incl. warm-up)"
    row "xplenty_run_job() in one SELECT" sql "$SQL_CALLS"
    row "libcurl_client easy (one reused connection)" easy "$LIBCURL_CALLS"
    row "curl command once a call (bash loop)" cmd "$CMD_CALLS"
    echo "diagnostics:"
    row "  libcurl_client easy, headers made once" easyh "$LIBCURL_CALLS"
    row "  libcurl_client multi (extension's HTTP path)" multi "$LIBCURL_CALLS"
    row "  jsonb_in of the answer body, SQL, no HTTP" parse "$SQL_CALLS"
    echo
    echo "extension / libcurl_client = $R_LIBCURL   (target >= $TARGET: $VERDICT)"
    echo "  the same ratio within each round: $(paste -d' ' <(printf '%s\n' ${RATES[sql]}) \
        <(printf '%s\n' ${RATES[easy]}) | awk '{ printf "%.3f ", $1 / $2 }')"
    echo "interleaved, $PAIRS pairs of $PAIR_CALLS calls: extension / libcurl_client = $R_PAIRED"
    echo "  (median of the pairs' ratios $R_PAIRED_MED; the pairs' ratios, sorted:$PAIR_RATIOS)"
    echo "extension / libcurl_client easy-headers = $R_EASYH   (like for like: the same bytes, headers made once)"
    echo "extension / curl command   = $R_CMD"
    echo
    echo "where a call's time goes (medians, us):"
    awk -v s="$US_SQL" -v e="$US_EASY" -v m="$US_MULTI" -v p="$US_PARSE" 'BEGIN {
        printf "  %6.1f  libcurl_client easy: the request itself\n", e
        printf "  %+6.1f  the multi interface the extension drives (multi - easy)\n", m - e
        printf "  %+6.1f  the rest: the answer read into jsonb, the request body, the executor, ... (by difference)\n", s - m
        printf "  %6.1f  xplenty_run_job()\n", s
        printf "  (for scale: jsonb_in of the same answer, the parse row, takes %.1f)\n", p }'
} | tee "$RESULTS"
say "results written to $RESULTS"
