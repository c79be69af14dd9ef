#!/usr/bin/env bash
#
# bench/instructions.sh - user-space instructions per call of
# xplenty_run_job() and of libcurl_client, counted by valgrind's callgrind:
# a figure that does not drift with the machine's speed, as the rates of
# run.sh do, so that two commits can be told apart by one run each.
#
# usage: sudo bench/instructions.sh
#
# Knobs (environment):
#   CALLS=2000      the per-call figure is (count(3 * CALLS) - count(CALLS))
#                   / (2 * CALLS): start-up and the first call cancel out
#   CACHE=1         also simulate the caches (first-level misses per call)
#   BUILD_FROM=rev  build that commit instead of the working tree
#   PATCH=file      with BUILD_FROM: apply this -p1 patch to that copy
#   KEEP=1          keep the throwaway cluster's data directory
#
# The extension runs in a single-user backend (postgres --single) under
# callgrind, against the same nginx as run.sh; libcurl_client runs under
# callgrind in its modes easy, easy-headers and multi.  Kernel time is not
# counted: valgrind sees only user space.  Results go to
# bench/out/instructions-<stamp>.txt.

set -euo pipefail
shopt -s inherit_errexit

CALLS=${CALLS:-2000}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=instructions.sh
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

require_root
ensure_packages postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev \
    nginx curl gcc make valgrind
make_run_dir
RESULTS=$OUT/instructions-$STAMP.txt
bench_traps

resolve_source
say "building the extension from $SOURCE_DESC, not installing it (log: $RUN/build.log)"
make_ext
LIB_DIR=$BUILD_DIR
SOURCE_DESC="$SOURCE_DESC, loaded from $LIB_DIR/xplenty.so"
build_libcurl_client

setup_pinning
start_nginx
start_run_job_cluster
# A single-user backend needs the cluster stopped.
stop_cluster "$RUN/pg/data"

VG=(valgrind --tool=callgrind)
[ -n "${CACHE:-}" ] && VG+=(--cache-sim=yes)
chmod 777 "$RUN"

# count NAME N: callgrind's totals (Ir and, with CACHE, the misses) of one
# run of N calls, as "Ir I1mr D1mr D1mw" (misses 0 without CACHE).
count() {
    local name=$1 n=$2 out=$RUN/cg-$1-$2.out
    case $name in
        sql)
            printf '%s\n' "SELECT count(xplenty_run_job(52, 434)) FROM generate_series(1, $n);" \
                >"$RUN/cg-$n.sql"
            chmod 644 "$RUN/cg-$n.sql"
            runuser -u postgres -- "${VG[@]}" --callgrind-out-file="$out" \
                "$PGBIN/postgres" --single -D "$RUN/pg/data" postgres \
                <"$RUN/cg-$n.sql" >"$RUN/cg-sql-$n.log" 2>&1
            grep -q "count = \"$n\"" "$RUN/cg-sql-$n.log" \
                || die "the single-user backend did not make $n calls (see $RUN/cg-sql-$n.log)"
            ;;
        *)
            "${VG[@]}" --callgrind-out-file="$out" "$RUN/libcurl_client" \
                "$JOBS_URL" "$API_KEY" "$n" "$name" >"$RUN/cg-$name-$n.log" 2>&1 \
                || die "libcurl_client $name failed (see $RUN/cg-$name-$n.log)"
            ;;
    esac
    awk '/^events:/ { for (i = 2; i <= NF; i++) col[$i] = i - 1 }
         /^summary:/ { printf "%s %s %s %s\n", $(col["Ir"] + 1),
             col["I1mr"] ? $(col["I1mr"] + 1) : 0,
             col["D1mr"] ? $(col["D1mr"] + 1) : 0,
             col["D1mw"] ? $(col["D1mw"] + 1) : 0 }' "$out"
}

# per_call NAME: "Ir I1mr D1mr D1mw" per call.
per_call() {
    local a b
    a=$(count "$1" "$CALLS")
    b=$(count "$1" $((3 * CALLS)))
    awk -v a="$a" -v b="$b" -v n=$((2 * CALLS)) 'BEGIN {
        split(a, A, " "); split(b, B, " ");
        printf "%.0f %.0f %.0f %.0f\n", (B[1] - A[1]) / n, (B[2] - A[2]) / n,
            (B[3] - A[3]) / n, (B[4] - A[4]) / n }'
}

declare -A PER=()
for name in sql easy easy-headers multi; do
    say "counting $name"
    PER[$name]=$(per_call "$name")
done

row() {    # label name
    read -r ir i1 d1r d1w <<<"${PER[$2]}"
    if [ -n "${CACHE:-}" ]; then
        printf '%-46s %9s %7s %7s %7s\n' "$1" "$ir" "$i1" "$d1r" "$d1w"
    else
        printf '%-46s %9s\n' "$1" "$ir"
    fi
}

{
    echo "xplenty instructions per call, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    machine_lines
    echo "method:   callgrind, user space only; (count of $((3 * CALLS)) calls - count of $CALLS) / $((2 * CALLS))"
    echo
    if [ -n "${CACHE:-}" ]; then
        printf '%-46s %9s %7s %7s %7s\n' "per call" "instr" "I1 miss" "D1 rd" "D1 wr"
    else
        printf '%-46s %9s\n' "per call" "instr"
    fi
    row "xplenty_run_job() (single-user backend)" sql
    row "libcurl_client easy" easy
    row "libcurl_client easy-headers" easy-headers
    row "libcurl_client multi" multi
    echo
    read -r s _ <<<"${PER[sql]}"
    read -r e _ <<<"${PER[easy]}"
    read -r h _ <<<"${PER[easy-headers]}"
    echo "libcurl_client easy / extension, by instructions: $(ratio "$e" "$s")"
    echo "libcurl_client easy-headers / extension:          $(ratio "$h" "$s")"
} | tee "$RESULTS"
say "results written to $RESULTS"
