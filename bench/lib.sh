# bench/lib.sh - shell pieces shared by bench/run.sh and bench/queue.sh.
# shellcheck shell=bash disable=SC2034  # (variables are for the scripts that source this)
#
# Sourced, not run.  The caller sets PROG (its name, for messages) and
# BENCH_DIR before sourcing, and runs with set -euo pipefail.  Everything a
# script starts lives under its run directory, $RUN, and is stopped by
# bench_cleanup, which the caller installs with bench_traps.

PGBIN=/usr/lib/postgresql/15/bin
SRC_DIR=$(dirname "$BENCH_DIR")
OUT=$BENCH_DIR/out

API_KEY=bench-api-key
ACCOUNT=bench-account
JOB_BODY='{"cluster_id": 52, "package_id": 434}'

say() { printf '%s\n' "$*" >&2; }
die() { say "$PROG: $*"; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo bench/$PROG): it installs packages and runs PostgreSQL as the postgres user"
}

# ensure_packages PKG...: apt-get install whichever are missing.
ensure_packages() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing: ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
    id postgres >/dev/null 2>&1 || die "no postgres OS user (postgresql-15 should have made it)"
}

# make_run_dir: $STAMP, $RUN (bench/out/run-<stamp>/, with pg/ owned by
# postgres and nginx/), and cd there: a directory the postgres user can
# read, for runuser.
make_run_dir() {
    STAMP=$(date +%Y%m%d-%H%M%S)
    RUN=$OUT/run-$STAMP
    mkdir -p "$RUN/pg" "$RUN/nginx"
    chown postgres: "$RUN/pg"
    cd "$RUN" || die "cannot enter $RUN"
}

# ---------------------------------------------------------------- teardown
# Servers to stop on exit: PostgreSQL data directories, and processes
# (nginx, the mock) by pid file or pid.
PG_DATA_DIRS=()
EXTRA_PIDS=()
SCRATCH=()      # more paths to remove at exit unless KEEP
STOPPED_PIDS=() # processes sent SIGSTOP, to continue before stopping anything
NGINX_PID=

stop_pid() {    # pid [signal]: signal, wait up to 5 s, then SIGKILL
    local pid=$1 sig=${2:-TERM}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

bench_cleanup() {
    local rc=$? d pid
    trap - EXIT INT TERM
    for pid in "${STOPPED_PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; done
    for d in "${PG_DATA_DIRS[@]}"; do
        if [ -f "$d/postmaster.pid" ]; then
            runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m fast -w stop \
                >/dev/null 2>&1 || say "warning: could not stop PostgreSQL in $d"
        fi
    done
    for pid in "${EXTRA_PIDS[@]}"; do stop_pid "$pid" TERM; done
    if [ -f "$RUN/nginx/nginx.pid" ]; then
        NGINX_PID=$(cat "$RUN/nginx/nginx.pid")
    fi
    stop_pid "$NGINX_PID" QUIT
    if [ -z "${KEEP:-}" ]; then
        for d in "${PG_DATA_DIRS[@]}" "${SCRATCH[@]}"; do rm -rf "$d"; done
    fi
    [ $rc -eq 0 ] || say "$PROG failed (exit $rc); logs are in $RUN"
    exit $rc
}

bench_traps() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ---------------------------------------------------------------- source
# resolve_source: what to build.  BUILD_FROM=<git revision> exports that
# commit to $RUN/src (with PATCH=file applied), e.g. while the working tree
# is mid-change; otherwise the working tree.  Sets REV, BUILD_DIR and
# SOURCE_DESC.
resolve_source() {
    BUILD_DIR=$SRC_DIR
    if [ -n "${BUILD_FROM:-}" ]; then
        REV=$(git -C "$SRC_DIR" rev-parse --short "$BUILD_FROM") || die "no revision $BUILD_FROM"
        mkdir -p "$RUN/src"
        git -C "$SRC_DIR" archive "$REV" | tar -x -C "$RUN/src"
        BUILD_DIR=$RUN/src
        SOURCE_DESC="commit $REV (BUILD_FROM=$BUILD_FROM)"
        if [ -n "${PATCH:-}" ]; then
            patch -p1 -d "$BUILD_DIR" <"$PATCH" >"$RUN/patch.log" 2>&1 \
                || { cat "$RUN/patch.log" >&2; die "patch $PATCH does not apply"; }
            SOURCE_DESC="$SOURCE_DESC + patch $(basename "$PATCH")"
        fi
    elif [ -n "${PATCH:-}" ]; then
        die "PATCH needs BUILD_FROM (the working tree is never patched)"
    else
        REV=$(git -C "$SRC_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')
        SOURCE_DESC="working tree at $REV"
        if ! git -C "$SRC_DIR" diff --quiet HEAD -- src sql Makefile 2>/dev/null ||
           [ -n "$(git -C "$SRC_DIR" ls-files --others --exclude-standard -- src sql 2>/dev/null)" ]; then
            SOURCE_DESC="$SOURCE_DESC, with uncommitted changes"
        fi
    fi
}

# make_ext TARGET...: PGXS make in $BUILD_DIR, logged to $RUN/build.log.
# (env -u PROFILE: PGXS would read PROFILE from the environment into CFLAGS.)
make_ext() {
    env -u PROFILE make -C "$BUILD_DIR" PG_CONFIG="$PGBIN/pg_config" "$@" \
        >>"$RUN/build.log" 2>&1 || { tail -30 "$RUN/build.log" >&2; die "build failed"; }
}

# link_missing SRC DST: symlink into DST every entry of SRC that DST lacks,
# descending into directories that both have.
link_missing() {
    local src=$1 dst=$2 e name
    mkdir -p "$dst"
    for e in "$src"/* ; do
        [ -e "$e" ] || continue
        name=$(basename "$e")
        if [ -d "$dst/$name" ] && [ ! -L "$dst/$name" ] && [ -d "$e" ]; then
            link_missing "$e" "$dst/$name"
        elif [ ! -e "$dst/$name" ] && [ ! -L "$dst/$name" ]; then
            ln -s "$e" "$dst/$name"
        fi
    done
}

# private_install ROOT: make install the extension into ROOT (DESTDIR),
# then make ROOT a PostgreSQL installation of its own: a copy of the
# postgres binary, with the system's libraries and share files linked in
# beside the extension's.  PostgreSQL finds $libdir and its share directory
# relative to where its binary is, so a server started from
# ROOT/usr/lib/postgresql/15/bin/postgres loads this build of the library
# everywhere (shared_preload_libraries, the background worker, every
# function of CREATE EXTENSION, whose module_pathname is $libdir/xplenty)
# and runs this build's extension script, while the system's installed
# copy stays as it is.  ROOT is removed at exit unless KEEP.  Sets
# PRIVATE_POSTGRES and PRIVATE_LIBDIR.
private_install() {
    local root=$1 bindir libdir sharedir
    SCRATCH+=("$root")
    bindir=$("$PGBIN/pg_config" --bindir)
    libdir=$("$PGBIN/pg_config" --pkglibdir)
    sharedir=$("$PGBIN/pg_config" --sharedir)
    make_ext install DESTDIR="$root"
    mkdir -p "$root$bindir"
    cp "$bindir/postgres" "$root$bindir/postgres"
    link_missing "$libdir" "$root$libdir"
    link_missing "$sharedir" "$root$sharedir"
    PRIVATE_POSTGRES=$root$bindir/postgres
    PRIVATE_LIBDIR=$root$libdir
}

# ---------------------------------------------------------------- CPUs
# setup_pinning: two cores: the servers (nginx, the mock) get one, the
# client under test (and this script, curl, psql, and the PostgreSQL
# backends and background worker, which inherit it from the postmaster)
# the other.  Sets CLIENT_CPU, SERVER_CPU, PIN_SERVER and PINNING.
setup_pinning() {
    NCPU=$(nproc)
    if [ "$NCPU" -ge 2 ] && command -v taskset >/dev/null; then
        CLIENT_CPU=0
        SERVER_CPU=1
        taskset -pc "$CLIENT_CPU" $$ >/dev/null
        PIN_SERVER=(taskset -c "$SERVER_CPU")
        PINNING="client side (PostgreSQL/libcurl_client/curl) on CPU $CLIENT_CPU, HTTP peer on CPU $SERVER_CPU"
    else
        CLIENT_CPU=
        SERVER_CPU=
        PIN_SERVER=()
        PINNING="none (fewer than 2 CPUs or no taskset)"
    fi
}

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"; return 0
        fi
    done
    die "no free port found"
}

# ---------------------------------------------------------------- nginx
# start_nginx: nginx from nginx.conf.in on a free port, pinned to the
# server CPU; checks that it answers POST /jobs with 201.  Sets
# NGINX_PORT, NGINX_PID, API_URL, JOBS_URL and JOB_ANSWER.
start_nginx() {
    local code
    NGINX_PORT=$(free_port)
    sed -e "s|@RUNDIR@|$RUN|g" -e "s|@PORT@|$NGINX_PORT|g" \
        "$BENCH_DIR/nginx.conf.in" >"$RUN/nginx/nginx.conf"
    "${PIN_SERVER[@]}" nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" \
        -e "$RUN/nginx/error.log" -g 'daemon on;'
    for _ in $(seq 50); do [ -s "$RUN/nginx/nginx.pid" ] && break; sleep 0.1; done
    NGINX_PID=$(cat "$RUN/nginx/nginx.pid")
    API_URL="http://127.0.0.1:$NGINX_PORT"
    JOBS_URL="$API_URL/$ACCOUNT/api/jobs"
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -u "$API_KEY:" -d "$JOB_BODY" "$JOBS_URL")
    [ "$code" = 201 ] || die "nginx answers $code, not 201, on $JOBS_URL"
    JOB_ANSWER=$(curl -s -X POST -u "$API_KEY:" -d "$JOB_BODY" "$JOBS_URL")
}

# accepted-connections and requests counters of nginx, "accepts requests"
nginx_counters() {
    curl -s "$API_URL/nginx_status" | awk 'NR == 3 { print $1, $3 }'
}

# ---------------------------------------------------------------- PostgreSQL
# init_cluster DATADIR: initdb a throwaway cluster owned by postgres and
# give it a free port and a socket under $RUN/pg.  The caller appends the
# rest of its settings to DATADIR/postgresql.conf.  Sets PG_PORT.
init_cluster() {
    local data=$1
    PG_PORT=$(free_port)
    PG_DATA_DIRS+=("$data")
    runuser -u postgres -- "$PGBIN/initdb" -D "$data" -A trust -U postgres \
        -E UTF8 --locale=C --no-sync >"$RUN/pg/initdb.log" 2>&1 \
        || { cat "$RUN/pg/initdb.log" >&2; die "initdb failed"; }
    cat >>"$data/postgresql.conf" <<EOF

# bench/$PROG
port = $PG_PORT
listen_addresses = ''
unix_socket_directories = '$RUN/pg'
fsync = off
EOF
}

# start_cluster DATADIR [POSTGRES_BINARY]
start_cluster() {
    local data=$1
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data" -l "$RUN/pg/postgres.log" \
        ${2:+-p "$2"} -w start >/dev/null \
        || { tail -20 "$RUN/pg/postgres.log" >&2; die "PostgreSQL did not start"; }
}

stop_cluster() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null
}

# psql_cmd DB: sets PSQL to a psql command line for that database.
psql_cmd() {
    PSQL=(runuser -u postgres -- "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1
          -h "$RUN/pg" -p "$PG_PORT" -d "$1")
}

# build_libcurl_client: $RUN/libcurl_client, from libcurl_client.c.
build_libcurl_client() {
    # shellcheck disable=SC2046
    gcc -O2 -Wall -Wextra -o "$RUN/libcurl_client" "$BENCH_DIR/libcurl_client.c" \
        $(curl-config --cflags) $(curl-config --libs)
}

# start_run_job_cluster: a throwaway cluster in $RUN/pg/data pointed at
# nginx (start_nginx first), with xplenty_run_job() from $LIB_DIR if set
# (through dynamic_library_path and CREATE FUNCTION, so that the system's
# install is left alone), else from CREATE EXTENSION; sets PSQL, and
# checks that one call gets nginx's job.
start_run_job_cluster() {
    local id
    init_cluster "$RUN/pg/data"
    cat >>"$RUN/pg/data/postgresql.conf" <<EOF
shared_preload_libraries = 'xplenty'
${LIB_DIR:+dynamic_library_path = '$LIB_DIR:\$libdir'}
xplenty.api_url = '$API_URL'
xplenty.account_id = '$ACCOUNT'
xplenty.api_key = '$API_KEY'
EOF
    start_cluster "$RUN/pg/data"
    psql_cmd postgres
    if [ -z "$LIB_DIR" ]; then
        "${PSQL[@]}" -c 'CREATE EXTENSION xplenty'
    else
        "${PSQL[@]}" -c "CREATE FUNCTION xplenty_run_job(int, int, jsonb DEFAULT NULL,
            jsonb DEFAULT NULL) RETURNS jsonb AS 'xplenty', 'xplenty_run_job'
            LANGUAGE C VOLATILE"
    fi
    id=$("${PSQL[@]}" -c "SELECT xplenty_run_job(52, 434)->>'id'")
    [ "$id" = 157 ] || die "xplenty_run_job returned job id '$id', expected 157"
}

# psql \timing of one statement, in ms, from psql's output.
statement_ms() { awk '/^Time:/ { print $2 }'; }

# ---------------------------------------------------------------- figures
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
usec() { awk -v r="$1" 'BEGIN { printf "%.1f", 1e6 / r }'; }

machine_lines() {
    echo "machine:  $NCPU CPUs, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)"
    echo "software: $("$PGBIN/postgres" --version), $(curl-config --version), $(nginx -v 2>&1 | sed 's/.*: //')"
    echo "source:   $SOURCE_DESC"
    echo "pinning:  $PINNING"
}
