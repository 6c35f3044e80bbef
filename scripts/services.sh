#!/usr/bin/env bash
# Usage: scripts/services.sh <command...>
#
# Starts a private PostgreSQL 15 and a private Redis on free loopback ports,
# exports
#   GONGJI_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:<port>/gongji_test
#   GONGJI_TEST_REDIS_URL=redis://127.0.0.1:<port>/0
# runs <command...>, then stops both services and removes their temp dir
# (also when the command fails or the script is interrupted). The exit code
# of the command is preserved.
#
# Environment:
#   GONGJI_PG_DURABLE=1     keep fsync/synchronous_commit/full_page_writes on
#                           (benchmarks); default is the fast, non-durable mode.
#   GONGJI_SERVICES_KEEP=1  do not tear the services down afterwards (debugging);
#                           default: always tear down.
#   GONGJI_PG_BIN           PostgreSQL bin dir (default /usr/lib/postgresql/15/bin).
set -uo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 <command...>" >&2
    exit 2
fi

PGBIN="${GONGJI_PG_BIN:-/usr/lib/postgresql/15/bin}"
REDIS_SERVER="${REDIS_SERVER:-redis-server}"
REDIS_CLI="${REDIS_CLI:-redis-cli}"

SVC_DIR=""
PG_STARTED=0
REDIS_PID=""
CLEANED=0

log() { echo "services.sh: $*" >&2; }

# --- privilege handling ------------------------------------------------------
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# Single-quote every argument for `su -c` (POSIX sh safe).
sq() {
    local out="" a
    for a in "$@"; do
        out="$out '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'"
    done
    printf '%s' "$out"
}

# Run a PostgreSQL tool as the `postgres` user when we are root (pg_ctl/initdb
# refuse to run as root), directly otherwise. Runs from $SVC_DIR so postgres
# never needs access to the caller's working directory.
as_pg() {
    if [ "$IS_ROOT" -eq 1 ]; then
        if command -v runuser >/dev/null 2>&1; then
            (cd "$SVC_DIR" && runuser -u postgres -- "$@")
        else
            (cd "$SVC_DIR" && su postgres -s /bin/sh -c "$(sq "$@")")
        fi
    else
        (cd "$SVC_DIR" && "$@")
    fi
}

# Services get their own session so a Ctrl-C in the terminal reaches only the
# command, not PostgreSQL/Redis (they are stopped by cleanup afterwards).
SETSID=""
command -v setsid >/dev/null 2>&1 && SETSID="setsid"

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# --- teardown ----------------------------------------------------------------
cleanup() {
    [ "$CLEANED" -eq 1 ] && return 0
    CLEANED=1
    if [ "${GONGJI_SERVICES_KEEP:-}" = "1" ]; then
        log "GONGJI_SERVICES_KEEP=1: leaving services running (dir $SVC_DIR, redis pid ${REDIS_PID:-none})"
        return 0
    fi
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null
        for _ in $(seq 1 100); do
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
        REDIS_PID=""
    fi
    if [ -n "$SVC_DIR" ] && [ -d "$SVC_DIR/data" ]; then
        if [ "$PG_STARTED" -eq 1 ] || [ -f "$SVC_DIR/data/postmaster.pid" ]; then
            if ! as_pg "$PGBIN/pg_ctl" -D "$SVC_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1; then
                if [ -f "$SVC_DIR/data/postmaster.pid" ]; then
                    local pid
                    pid="$(head -n1 "$SVC_DIR/data/postmaster.pid" 2>/dev/null)"
                    [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null
                    sleep 1
                    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
                fi
            fi
        fi
    fi
    if [ -n "$SVC_DIR" ] && [ -d "$SVC_DIR" ]; then
        rm -rf -- "$SVC_DIR"
    fi
}
# INT/TERM: exit with the conventional code, which runs cleanup. The command
# runs in the foreground (keeps stdin/tty and Ctrl-C semantics), so a signal
# sent to this script alone takes effect once the command has ended; CI
# runners and `timeout` signal the whole process group, reaching the command
# directly. The services run in their own session (setsid) and are therefore
# only stopped by cleanup, after the command's own teardown.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    log "$*"
    exit 1
}

# --- temp dir ----------------------------------------------------------------
if [ "$IS_ROOT" -eq 1 ]; then
    id postgres >/dev/null 2>&1 || fail "running as root but there is no 'postgres' user"
    # must be reachable by the postgres user and short (unix socket path limit)
    SVC_DIR="$(mktemp -d /tmp/gongji-svc.XXXXXX)" || fail "mktemp failed"
    chown postgres: "$SVC_DIR" || fail "chown postgres $SVC_DIR failed"
else
    SVC_DIR="$(mktemp -d "${TMPDIR:-/tmp}/gongji-svc.XXXXXX")" || fail "mktemp failed"
fi
chmod 700 "$SVC_DIR"

# --- PostgreSQL --------------------------------------------------------------
[ -x "$PGBIN/initdb" ] || fail "$PGBIN/initdb not found (run 'make system-deps')"

as_pg "$PGBIN/initdb" -D "$SVC_DIR/data" -A trust -U postgres -E UTF8 --locale=C \
    >"$SVC_DIR/initdb.log" 2>&1 </dev/null \
    || { cat "$SVC_DIR/initdb.log" >&2; fail "initdb failed"; }

PG_OPTS_EXTRA="-c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB"
if [ "${GONGJI_PG_DURABLE:-}" != "1" ]; then
    PG_OPTS_EXTRA="$PG_OPTS_EXTRA -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi

PG_PORT=""
for attempt in 1 2 3; do
    port="$(free_port)" || fail "could not pick a free port"
    if as_pg $SETSID "$PGBIN/pg_ctl" -D "$SVC_DIR/data" -l "$SVC_DIR/postgres.log" -w -t 30 \
        -o "-p $port -k $SVC_DIR $PG_OPTS_EXTRA" start >/dev/null 2>&1 </dev/null; then
        PG_STARTED=1
        PG_PORT="$port"
        break
    fi
    # a half-started server may still be around; make sure it is gone
    as_pg "$PGBIN/pg_ctl" -D "$SVC_DIR/data" -m immediate -w -t 10 stop >/dev/null 2>&1
    log "postgres start on port $port failed (attempt $attempt)"
done
if [ -z "$PG_PORT" ]; then
    tail -n 30 "$SVC_DIR/postgres.log" >&2 2>/dev/null
    fail "could not start PostgreSQL"
fi

ready=0
for _ in $(seq 1 300); do
    if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres </dev/null; then
        ready=1
        break
    fi
    sleep 0.1
done
if [ "$ready" -ne 1 ]; then
    tail -n 30 "$SVC_DIR/postgres.log" >&2 2>/dev/null
    fail "PostgreSQL did not become ready on port $PG_PORT"
fi

"$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres gongji_test </dev/null \
    || fail "createdb gongji_test failed"

# --- Redis -------------------------------------------------------------------
command -v "$REDIS_SERVER" >/dev/null 2>&1 || fail "redis-server not found (run 'make system-deps')"

REDIS_PORT=""
for attempt in 1 2 3; do
    port="$(free_port)" || fail "could not pick a free port"
    $SETSID "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$SVC_DIR" \
        </dev/null >"$SVC_DIR/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 300); do
        if [ "$("$REDIS_CLI" -h 127.0.0.1 -p "$port" ping 2>/dev/null </dev/null)" = "PONG" ]; then
            REDIS_PORT="$port"
            break
        fi
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$REDIS_PORT" ] && break
    kill -KILL "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null
    REDIS_PID=""
    log "redis start on port $port failed (attempt $attempt)"
done
if [ -z "$REDIS_PORT" ]; then
    tail -n 30 "$SVC_DIR/redis.log" >&2 2>/dev/null
    fail "could not start Redis"
fi

# --- run the command ---------------------------------------------------------
export GONGJI_TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:${PG_PORT}/gongji_test"
export GONGJI_TEST_REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"

durable="fast"
[ "${GONGJI_PG_DURABLE:-}" = "1" ] && durable="durable"
log "postgres 127.0.0.1:${PG_PORT} (${durable}), redis 127.0.0.1:${REDIS_PORT}"

"$@"
rc=$?
exit "$rc"
