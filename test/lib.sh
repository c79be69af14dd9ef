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

# as_pg CMD...: run a command as the postgres user, keeping PATH.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$RUN_USER" -- env PATH="$PG_BIN:$PATH" "$@"
	else
		env PATH="$PG_BIN:$PATH" "$@"
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
build_and_install() {
	say "building and installing the extension"
	make -C "$TOP" -s PG_CONFIG=/usr/bin/pg_config
	make -C "$TOP" -s PG_CONFIG=/usr/bin/pg_config install >/dev/null
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
	local i
	for i in $(seq 1 100); do
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
