# test/lib.sh - shared by test/run.sh, test/demo.sh and bench scripts.
#
# Installs what the extension needs from Debian, builds and installs it,
# and starts and stops throwaway PostgreSQL clusters and mock APIs.  Every
# server runs as the "postgres" operating system user, since PostgreSQL
# refuses to run as root.  Source it; do not run it.

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_USER=postgres
PACKAGES="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
	postgresql-$PG_MAJOR-cron libcurl4-openssl-dev libipc-run-perl
	make gcc python3 curl"

say() { printf '%s\n' "== $*"; }

# as_pg CMD...: run a command as the postgres user, keeping PATH.  Under
# a checker (checked_build_and_install), its pg_ctl comes first.
as_pg() {
	local path=$PG_BIN:$PATH
	[ -n "${CHECK_BIN:-}" ] && path=$CHECK_BIN:$path
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$RUN_USER" -- env PATH="$path" "$@"
	else
		env PATH="$path" "$@"
	fi
}

# install_packages [EXTRA...]: install what is missing, as root.
install_packages() {
	local missing=() p
	for p in $PACKAGES "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages: ${missing[*]}; run as root to install them" >&2
		return 1
	fi
	say "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
		>/dev/null
	# The Debian package starts a default cluster that nothing here uses.
	pg_ctlcluster "$PG_MAJOR" main stop >/dev/null 2>&1 || true
}

# build_and_install: compile with -Werror and install into PostgreSQL.
# (SANITIZE= keeps a SANITIZE=1 in the environment out of this build.)
build_and_install() {
	say "building and installing the extension"
	make -C "$TOP" -s PG_CONFIG=/usr/bin/pg_config SANITIZE=
	make -C "$TOP" -s PG_CONFIG=/usr/bin/pg_config SANITIZE= install >/dev/null
}

# --- checkers: SANITIZE=1 (ASan + UBSan) and VALGRIND=1 (memcheck) ------
#
# checked_build_and_install DIR asan|valgrind builds a copy of the tree in
# DIR/build (with "make SANITIZE=1" for asan) and installs it into a
# PostgreSQL installation of its own, DIR/inst, never over the system's:
# PostgreSQL finds $libdir and its share directory relative to where its
# binary runs from, so a copy of the postgres binary in DIR/inst/usr/lib/
# postgresql/15/bin, beside links to the system's libraries and share
# files, loads this build everywhere (shared_preload_libraries, and
# CREATE EXTENSION's $libdir/xplenty).  Its copy of the real binary is
# postgres.bin; "postgres" there is a script that runs it with libasan and
# libubsan preloaded, or under valgrind.  Debian's binaries are not
# instrumented: only the extension's own code is checked by ASan and
# UBSan (and the C library calls ASan intercepts, in every process).
#
# pg_ctl, copied into the same directory, starts the "postgres" next to
# itself, and as_pg puts that directory first on PATH, so every server
# started by start_cluster or by PostgreSQL::Test::Cluster (which runs
# pg_ctl from PATH) runs checked; initdb, psql, perl and python do not.
# Reports go to DIR/logs (asan.PID, ubsan.PID, valgrind.PID), which
# checker_reports reads.  Sets CHECK_MODE, CHECK_BIN, CHECK_LOG, CHECK_SRC.
checked_build_and_install() {
	local dir=$1 mode=$2 inst=$1/inst bindir libdir sharedir san=
	bindir=$(pg_config --bindir)
	libdir=$(pg_config --pkglibdir)
	sharedir=$(pg_config --sharedir)
	say "building the extension for $mode in $dir/build," \
		"installing it into $inst"
	rm -rf "$dir/build" "$inst" "$dir/logs"
	mkdir -p "$dir/build" "$dir/logs" || return 1
	cp -r "$TOP/Makefile" "$TOP/xplenty.control" "$TOP/src" "$TOP/sql" \
		"$dir/build/" || return 1
	[ "$mode" = asan ] && san=1
	make -C "$dir/build" -s clean >/dev/null &&
		make -C "$dir/build" -s PG_CONFIG=/usr/bin/pg_config SANITIZE=$san &&
		make -C "$dir/build" -s PG_CONFIG=/usr/bin/pg_config SANITIZE=$san \
			DESTDIR="$inst" install >/dev/null || return 1

	mkdir -p "$inst$bindir" "$inst$libdir/bitcode" "$inst$sharedir/extension"
	link_missing "$libdir" "$inst$libdir"
	link_missing "$libdir/bitcode" "$inst$libdir/bitcode"
	link_missing "$sharedir" "$inst$sharedir"
	link_missing "$sharedir/extension" "$inst$sharedir/extension"
	[ -e "$inst/usr/share/locale" ] || ln -s /usr/share/locale "$inst/usr/share/locale"
	cp "$bindir/postgres" "$inst$bindir/postgres.bin" &&
		cp "$bindir/pg_ctl" "$inst$bindir/pg_ctl" || return 1

	CHECK_MODE=$mode
	CHECK_BIN=$inst$bindir
	CHECK_LOG=$dir/logs
	CHECK_SRC=$dir/build/src
	if [ "$mode" = asan ]; then
		gcc -O2 -Wall -Wextra -Werror -shared -fPIC \
			-o "$inst/asan_preload.so" "$TOP/test/asan_preload.c" -ldl ||
			return 1
		write_asan_wrapper "$CHECK_BIN/postgres" "$inst/asan_preload.so"
	else
		write_valgrind_wrapper "$CHECK_BIN/postgres"
	fi
	chmod 755 "$CHECK_BIN/postgres"
	chmod 1777 "$CHECK_LOG"
	[ "$(id -u)" = 0 ] && chown "$RUN_USER" "$CHECK_LOG"
	# The wrapper must give what the real binary gives.
	[ "$(as_pg "$CHECK_BIN/postgres" -V)" = "$("$bindir/postgres" -V)" ] || {
		echo "$CHECK_BIN/postgres does not run" >&2
		return 1
	}
}

# link_missing FROM TO: link each entry of directory FROM into TO, unless
# TO has one of that name.
link_missing() {
	local f
	for f in "$1"/*; do
		[ -e "$2/${f##*/}" ] || [ -L "$2/${f##*/}" ] || ln -s "$f" "$2/${f##*/}"
	done
}

# write_asan_wrapper FILE SHIM: libasan must come first in LD_PRELOAD;
# test/asan_preload.c (SHIM) says why it comes too, and why before libubsan
# and why UBSan's log_path is ASan's (its own is XPLENTY_UBSAN_LOG_PATH).
# ASan: a report ends the process, which the postmaster takes for a crash
# (every session is cut, the cluster reinitialises): the test at hand
# fails too.  UBSan reports and goes on.  Both write to CHECK_LOG, not to
# the server log.  No leak check: a backend leaves what it allocated to its
# exit.  allocator_may_return_null keeps PostgreSQL's "out of memory" paths
# as they are.
write_asan_wrapper() {
	local asan ubsan
	asan=$(gcc -print-file-name=libasan.so)
	ubsan=$(gcc -print-file-name=libubsan.so)
	cat >"$1" <<-EOF
		#!/bin/sh
		# Written by test/lib.sh: the server with the ASan runtime preloaded.
		LD_PRELOAD="$asan $2 $ubsan\${LD_PRELOAD:+ \$LD_PRELOAD}"
		ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:allocator_may_return_null=1:log_path=$CHECK_LOG/asan\${ASAN_OPTIONS:+:\$ASAN_OPTIONS}"
		UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:report_error_type=1:log_path=$CHECK_LOG/asan\${UBSAN_OPTIONS:+:\$UBSAN_OPTIONS}"
		XPLENTY_UBSAN_LOG_PATH=$CHECK_LOG/ubsan
		export LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS XPLENTY_UBSAN_LOG_PATH
		echo "\$\$ asan \$*" >>"$CHECK_LOG/servers"
		exec "$CHECK_BIN/postgres.bin" "\$@"
	EOF
}

# valgrind: memcheck follows the postmaster's forks (a file per process);
# errors are only logged, since an exit status would be taken for a crash.
# test/valgrind.supp is PostgreSQL's src/tools/valgrind.supp and more.
write_valgrind_wrapper() {
	cat >"$1" <<-EOF
		#!/bin/sh
		# Written by test/lib.sh: the server under valgrind's memcheck.
		echo "\$\$ valgrind \$*" >>"$CHECK_LOG/servers"
		exec valgrind --quiet --leak-check=no --track-origins=yes \\
			--num-callers=40 --error-limit=no --fullpath-after= \\
			--suppressions="$TOP/test/valgrind.supp" --gen-suppressions=all \\
			--log-file="$CHECK_LOG/valgrind.%p" \\
			"$CHECK_BIN/postgres.bin" "\$@"
	EOF
}

# checker_reports LABEL [SERVER_LOG...]: read the reports written to
# CHECK_LOG since the last call (and any in the server logs given), move
# them to CHECK_LOG/LABEL, print them, and print, last, the number of
# distinct reports whose stack names the extension's code, plus one if no
# server ran under the checker (CHECK_LOG/servers has a line a start).
checker_reports() {
	local label=$1 f moved=()
	shift
	mkdir -p "$CHECK_LOG/$label"
	for f in "$CHECK_LOG"/servers "$CHECK_LOG"/asan.* "$CHECK_LOG"/ubsan.* \
		"$CHECK_LOG"/valgrind.*; do
		[ -f "$f" ] || continue
		mv "$f" "$CHECK_LOG/$label/" && moved+=("$CHECK_LOG/$label/${f##*/}")
	done
	python3 "$TOP/test/checker_reports.py" --label "$label" \
		--src "$CHECK_SRC" --lib "$CHECK_BIN/../lib/xplenty.so" \
		-- "${moved[@]}" "$@"
}

# make_workdir NAME: a scratch directory the postgres user can write.
make_workdir() {
	local dir
	dir=$(mktemp -d "/tmp/xplenty-$1.XXXXXX")
	chmod 755 "$dir"
	[ "$(id -u)" = 0 ] && chown "$RUN_USER" "$dir"
	echo "$dir"
}

# start_mock DIR PORT: start the mock API, wait until it answers.  It
# runs as the calling user: it only listens on 127.0.0.1.
start_mock() {
	local dir=$1 port=$2
	python3 "$TOP/test/mock/mock_xplenty.py" --port "$port" \
		--port-file "$dir/mock.port" >"$dir/mock.log" 2>&1 &
	echo $! >"$dir/mock.pid"
	python3 "$TOP/test/mock/mockctl" --port "$port" wait-ready --timeout 10 &&
		kill -0 "$(cat "$dir/mock.pid")" 2>/dev/null && return 0
	echo "the mock API could not start on port $port:" >&2
	cat "$dir/mock.log" >&2
	return 1
}

# stop_mock DIR
stop_mock() {
	[ -f "$1/mock.pid" ] && kill "$(cat "$1/mock.pid")" 2>/dev/null
	rm -f "$1/mock.pid"
}

# start_cluster DIR PORT DBNAME MOCKPORT: initdb and start a server with
# the extension preloaded and pointed at the mock API.
start_cluster() {
	local dir=$1 port=$2 db=$3 mockport=$4
	as_pg initdb -D "$dir/data" -A trust -U postgres >"$dir/initdb.log"
	cat >>"$dir/data/postgresql.conf" <<-EOF
		port = $port
		listen_addresses = ''
		unix_socket_directories = '$dir'
		shared_preload_libraries = 'xplenty, pg_cron'
		cron.database_name = '$db'
		xplenty.database = '$db'
		xplenty.api_url = 'http://127.0.0.1:$mockport'
		xplenty.account_id = 'acme'
		xplenty.api_key = 'test-api-key'
		xplenty.retry_base_delay = '200ms'
		xplenty.retry_max_delay = '2s'
		xplenty.poll_min_interval = '100ms'
		xplenty.poll_max_interval = '1s'
		fsync = off
	EOF
	as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
	as_pg createdb -h "$dir" -p "$port" -U postgres "$db"
	# The worker could not connect before the database existed; it is
	# restarted within 5 seconds.  Wait for it.
	local i tries=100
	[ "${CHECK_MODE:-}" = valgrind ] && tries=1200
	for i in $(seq 1 "$tries"); do
		[ "$(as_pg psql -X -At -h "$dir" -p "$port" -U postgres -d "$db" \
			-c "SELECT count(*) FROM pg_stat_activity
				WHERE backend_type = 'xplenty worker'")" = 1 ] && return 0
		sleep 0.1
	done
	echo "the xplenty worker did not start; see $dir/server.log" >&2
	return 1
}

# stop_cluster DIR
stop_cluster() {
	[ -d "$1/data" ] &&
		as_pg pg_ctl -D "$1/data" -m fast -w stop >/dev/null 2>&1
	return 0
}
