#!/usr/bin/env bash
# test/run.sh - the whole test suite, on a fresh Debian 12 machine.
#
# Run as root (it installs Debian packages and the extension):
#     test/run.sh
# It builds the extension, then runs
#   1. the pg_regress suite (sql/, expected/) against a throwaway cluster
#      and a mock Xplenty API on 127.0.0.1:58080, and
#   2. the TAP tests (test/t/*.pl), each of which starts its own clusters
#      (PostgreSQL::Test::Cluster) and its own mock API,
# and ends with a line "N passed, N failed"; the exit status is non-zero
# if anything failed.  Set KEEP=1 to keep the scratch directories.
#
# While working on one part: "test/run.sh regress [TEST...]" runs only
# pg_regress (all tests, or those named), "test/run.sh tap [SCRIPT...]"
# only the TAP scripts (all, or those whose names are given, e.g. 010),
# "test/run.sh fuzz" only the fuzzers' regression inputs.
#
# SANITIZE=1 test/run.sh ... builds the extension with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs every server with their runtime;
# VALGRIND=1 runs every server under valgrind's memcheck (slow: meant for
# "regress").  Either installs into a scratch installation, not into the
# system's (see checked_build_and_install in lib.sh), and counts each
# distinct report whose stack names the extension's code as a failure of
# the part (or TAP script) during which it was written.

set -u
. "$(dirname "$0")/lib.sh"

REGRESS_PORT=58432
MOCK_PORT=58080
REGRESS_DB=contrib_regression

part=${1:-all}
[ $# -gt 0 ] && shift
case "$part" in
	all|regress|tap|fuzz) ;;
	*) echo "usage: test/run.sh [regress|tap|fuzz] [names...]" >&2; exit 2 ;;
esac

check=
[ "${SANITIZE:-}" = 1 ] && check=asan
[ "${VALGRIND:-}" = 1 ] && check=valgrind
[ "${SANITIZE:-}" = 1 ] && [ "${VALGRIND:-}" = 1 ] &&
	{ echo "SANITIZE=1 and VALGRIND=1 do not go together" >&2; exit 2; }

if [ "$check" = valgrind ]; then
	install_packages valgrind || exit 1
else
	install_packages || exit 1
fi
[ -n "$check" ] || build_and_install || exit 1

work=$(make_workdir "test${check:+-$check}")
cleanup() {
	stop_cluster "$work/regress"
	stop_mock "$work/regress"
	[ "${KEEP:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
if [ -n "$check" ]; then
	checked_build_and_install "$work/check" "$check" || exit 1
fi

passed=0
failed=0

# count_reports LABEL [LOG...]: under a checker, print the reports written
# since the last call and add those in the extension's code to "failed".
count_reports() {
	[ -n "$check" ] || return 0
	local out n
	out=$(checker_reports "$@")
	printf '%s\n' "$out" | sed '$d'
	n=$(printf '%s\n' "$out" | tail -n 1)
	case "$n" in ''|*[!0-9]*) echo "checker_reports failed" >&2; n=1 ;; esac
	failed=$((failed + n))
}

pgxs=$(dirname "$(pg_config --pgxs)")

# --- pg_regress --------------------------------------------------------
run_regress() {
say "pg_regress suite"
mkdir -p "$work/regress" && chown "$RUN_USER" "$work/regress" 2>/dev/null
start_mock "$work/regress" "$MOCK_PORT" || exit 1
start_cluster "$work/regress" "$REGRESS_PORT" "$REGRESS_DB" "$MOCK_PORT" ||
	exit 1

tests=$(sed -n 's/^REGRESS = //p' "$TOP/Makefile")
[ "$part" = regress ] && [ $# -gt 0 ] && tests="$*"
(cd "$TOP" && as_pg env XPLENTY_MOCK_PORT="$MOCK_PORT" \
	"$pgxs/../test/regress/pg_regress" \
	--inputdir="$TOP" --outputdir="$work/regress" \
	--host="$work/regress" --port="$REGRESS_PORT" --user=postgres \
	--dbname="$REGRESS_DB" --use-existing $tests) | tee "$work/regress.out"
regress_ok=$(grep -cE '^(test| ) .* \.\.\. ok' "$work/regress.out")
regress_bad=$(grep -cE '\.\.\. FAILED' "$work/regress.out")
passed=$((passed + regress_ok))
failed=$((failed + regress_bad))
if [ "$regress_bad" -gt 0 ] && [ -f "$work/regress/regression.diffs" ]; then
	head -200 "$work/regress/regression.diffs"
fi
stop_cluster "$work/regress"
stop_mock "$work/regress"
count_reports regress "$work/regress/server.log"
}

# --- TAP ---------------------------------------------------------------
run_tap() {
say "TAP tests"
mkdir -p "$work/tap" && chown "$RUN_USER" "$work/tap" 2>/dev/null
for t in "$TOP"/test/t/*.pl; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .pl)
	if [ "$part" = tap ] && [ $# -gt 0 ]; then
		case " $* " in *" ${name%%_*} "*|*" $name "*) ;; *) continue ;; esac
	fi
	mkdir -p "$work/tap/$name"
	chown "$RUN_USER" "$work/tap/$name" 2>/dev/null
	(cd "$work/tap/$name" && as_pg env TESTDIR="$work/tap/$name" \
		PERL5LIB="$pgxs/../test/perl:$TOP/test/t" \
		XPLENTY_TOP="$TOP" PG_REGRESS="$pgxs/../test/regress/pg_regress" \
		prove -v "$t") >"$work/tap/$name.out" 2>&1
	ok=$(grep -cE '^ok [0-9]+' "$work/tap/$name.out")
	bad=$(grep -cE '^not ok [0-9]+' "$work/tap/$name.out")
	if ! grep -q '^Result: PASS' "$work/tap/$name.out"; then
		# A script that died part way has failed, whatever it counted.
		[ "$bad" -eq 0 ] && bad=1
		cat "$work/tap/$name.out"
		for log in "$work/tap/$name"/tmp_check/log/*.log; do
			[ -f "$log" ] && { echo "--- $log"; tail -40 "$log"; }
		done
	fi
	echo "$name: $ok passed, $bad failed"
	passed=$((passed + ok))
	failed=$((failed + bad))
	count_reports "$name" "$work/tap/$name"/tmp_check/log/*.log
done
}

# --- fuzz regression inputs --------------------------------------------
# Every input the fuzzers found a bug with, and their corpus, replayed once
# through the fuzz targets (fuzz/README.md); one test for them all.
run_fuzz_regress() {
	say "fuzz regression inputs"
	if ! command -v clang-14 >/dev/null ||
		! dpkg -s libclang-rt-14-dev >/dev/null 2>&1; then
		if [ "$(id -u)" = 0 ]; then
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				clang-14 libclang-rt-14-dev >/dev/null
		fi
	fi
	if make -C "$TOP/fuzz" -s CC=clang-14 regress >"$work/fuzz.out" 2>&1; then
		passed=$((passed + 1))
		echo "fuzz regress: passed"
	else
		failed=$((failed + 1))
		tail -40 "$work/fuzz.out"
		echo "fuzz regress: failed"
	fi
}

case "$part" in
	all) run_regress; run_tap; run_fuzz_regress ;;
	regress) run_regress "$@" ;;
	tap) run_tap "$@" ;;
	fuzz) run_fuzz_regress ;;
esac

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
