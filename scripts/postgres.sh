#!/usr/bin/env bash
# A throwaway Postgres cluster for forgeline's tests and local runs.
#
#   scripts/postgres.sh start DIR PORT   create (if needed) and start a cluster in DIR,
#                                        listening on 127.0.0.1:PORT only; prints its URL
#                                        (postgresql://postgres@127.0.0.1:PORT/forgeline)
#                                        on stdout as the last line
#   scripts/postgres.sh stop DIR         stop the server whose PID is in DIR/postmaster.pid
#
# DIR is the data directory itself; the unix socket lives in DIR/socket. Authentication is
# trust for local connections, fsync stays on. When run as root, the server runs as the
# unprivileged `postgres` user (initdb refuses root) and DIR is chowned to it.
set -euo pipefail

PROG=${0##*/}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

usage() {
    echo "usage: $PROG start DIR PORT | $PROG stop DIR" >&2
    exit 2
}

# Print the directory holding initdb, pg_ctl and postgres, or fail saying what to install.
find_bindir() {
    local candidate dir
    if command -v pg_config >/dev/null 2>&1; then
        candidate=$(pg_config --bindir 2>/dev/null || true)
        if [ -n "$candidate" ] && [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then
            echo "$candidate"
            return 0
        fi
    fi
    # Debian/Ubuntu keep the server binaries out of PATH; prefer the newest version.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    die "no PostgreSQL server binaries found (initdb, pg_ctl under \`pg_config --bindir\`," \
        "/usr/lib/postgresql/*/bin or PATH): install the Debian package postgresql" \
        "(apt-get install postgresql) and run this again"
}

# Run a command as the cluster owner: `postgres` when we are root, else ourselves.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            local quoted
            quoted=$(printf '%q ' "$@")
            su postgres -s /bin/sh -c "$quoted"
        fi
    else
        "$@"
    fi
}

tail_log() {
    if [ -f "$1" ]; then
        echo "--- last lines of $1 ---" >&2
        tail -n 20 "$1" >&2 || true
    fi
}

cmd_start() {
    local dir=$1 port=$2 bindir socket log
    case $port in
        '' | *[!0-9]*) die "PORT must be a number, got '$port'" ;;
    esac
    bindir=$(find_bindir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    socket=$dir/socket
    log=$dir/server.log

    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 ||
            die "running as root needs the unprivileged 'postgres' user (initdb refuses root):" \
                "install the Debian package \`postgresql\` or create the user"
        chown postgres: "$dir"
    fi
    chmod 700 "$dir"
    as_owner test -w "$dir" ||
        die "$dir is not writable by the cluster owner; is one of its parents private (mode 700)?"

    if [ ! -f "$dir/PG_VERSION" ]; then
        if [ -n "$(ls -A "$dir")" ]; then
            die "$dir is not empty and holds no cluster; give an empty or new directory"
        fi
        echo "$PROG: initdb in $dir ($bindir)" >&2
        local out
        out=$(as_owner "$bindir/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C 2>&1) || {
            echo "$out" | tail -n 20 >&2
            die "initdb failed in $dir"
        }
        as_owner mkdir -p "$socket"
        local socket_conf=${socket//\'/\'\'}
        # fsync, synchronous_commit and full_page_writes keep their (durable) defaults.
        as_owner sh -c 'cat >>"$1"' sh "$dir/postgresql.conf" <<EOF

# --- forgeline throwaway cluster ($PROG) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$socket_conf'
max_connections = 200
log_min_messages = warning
EOF
    fi

    if [ -f "$dir/postmaster.pid" ] && as_owner "$bindir/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        die "a server is already running in $dir; stop it first ($PROG stop $dir)"
    fi
    echo "$PROG: starting postgres on 127.0.0.1:$port" >&2
    as_owner "$bindir/pg_ctl" -D "$dir" -l "$log" -o "-p $port" -w -t 60 start >/dev/null || {
        tail_log "$log"
        die "the server in $dir did not start on 127.0.0.1:$port (port already taken?)"
    }

    local psql=("$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres)
    if [ -z "$(as_owner "${psql[@]}" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'forgeline'")" ]; then
        as_owner "${psql[@]}" -d postgres -c "CREATE DATABASE forgeline" >/dev/null || {
            tail_log "$log"
            die "could not create the database forgeline"
        }
    fi
    echo "postgresql://postgres@127.0.0.1:$port/forgeline"
}

cmd_stop() {
    local dir=$1 pid bindir
    if [ ! -f "$dir/postmaster.pid" ]; then
        echo "$PROG: no server running in $dir (no postmaster.pid)" >&2
        return 0
    fi
    pid=$(head -n 1 "$dir/postmaster.pid")
    case $pid in
        '' | *[!0-9]*) die "$dir/postmaster.pid does not start with a PID" ;;
    esac
    if ! alive "$pid"; then
        echo "$PROG: server $pid in $dir is not running (stale postmaster.pid)" >&2
        return 0
    fi
    bindir=$(find_bindir 2>/dev/null || true)
    if [ -z "$bindir" ] || ! as_owner "$bindir/pg_ctl" -D "$dir" -m immediate -w -t 30 stop \
        >/dev/null 2>&1; then
        # pg_ctl unavailable or stuck: SIGQUIT is postgres' immediate shutdown.
        kill -QUIT "$pid" 2>/dev/null || true
        local waited=0
        while alive "$pid"; do
            if [ "$waited" -ge 300 ]; then
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    # The postmaster is gone once pg_ctl returns; give init a moment to reap it too, so
    # that nothing named postgres is listed right after `stop`.
    local reaped=0
    while [ -e "/proc/$pid" ] && [ "$reaped" -lt 30 ]; do
        sleep 0.1
        reaped=$((reaped + 1))
    done
    echo "$PROG: stopped server $pid in $dir" >&2
}

# Whether PID is a live process (a zombie awaiting its reaper is not).
alive() {
    local state
    [ -e "/proc/$1" ] || { kill -0 "$1" 2>/dev/null; return; }
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
    [ -n "$state" ] && [ "$state" != Z ]
}

[ $# -ge 1 ] || usage
case $1 in
    start)
        [ $# -eq 3 ] || usage
        cmd_start "$2" "$3"
        ;;
    stop)
        [ $# -eq 2 ] || usage
        cmd_stop "$2"
        ;;
    *) usage ;;
esac
