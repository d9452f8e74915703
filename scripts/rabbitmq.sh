#!/usr/bin/env bash
# A throwaway RabbitMQ server for forgeline's tests, benchmarks and local runs.
#
#   scripts/rabbitmq.sh start DIR   start a node whose state lives in DIR (created if
#                                   needed), listening on 127.0.0.1 only, with its own epmd;
#                                   prints its URL (amqp://guest:guest@127.0.0.1:PORT/)
#                                   on stdout as the last line
#   scripts/rabbitmq.sh stop DIR    stop that node and its epmd, by the PIDs in DIR
#
# The first start picks three free ports (AMQP, Erlang distribution, epmd) and keeps them
# in DIR/ports, so starting DIR again (a broker restart) gives the same URL and finds the
# durable queues and messages it had. Nothing is shared with a system RabbitMQ: the node
# has its own name, RABBITMQ_MNESIA_BASE, logs, cookie (HOME=DIR) and epmd. When run as
# root the node runs as the unprivileged `rabbitmq` user (Debian package rabbitmq-server)
# and DIR is chowned to it.
set -euo pipefail

PROG=${0##*/}
SERVER=${RABBITMQ_SERVER:-/usr/lib/rabbitmq/bin/rabbitmq-server}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

usage() {
    echo "usage: $PROG start DIR | $PROG stop DIR" >&2
    exit 2
}

find_tools() {
    [ -x "$SERVER" ] || die "no RabbitMQ server at $SERVER: install the Debian package" \
        "rabbitmq-server (apt-get install rabbitmq-server) and run this again"
    command -v epmd >/dev/null 2>&1 || die "no epmd on PATH: install the Debian package" \
        "rabbitmq-server (it brings Erlang's epmd) and run this again"
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to pick free ports"
}

# Run a command as the node's owner, replacing this process (so $! is its PID):
# `rabbitmq` when we are root, else ourselves.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        exec setpriv --reuid rabbitmq --regid rabbitmq --init-groups -- "$@"
    else
        exec "$@"
    fi
}

free_ports() {
    python3 - <<'EOF'
import socket
held = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
}

# Whether PID is a live process (a zombie awaiting its reaper is not).
alive() {
    local state
    [ -e "/proc/$1" ] || { kill -0 "$1" 2>/dev/null; return; }
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
    [ -n "$state" ] && [ "$state" != Z ]
}

pid_in() {
    local pid
    [ -f "$1" ] || return 1
    pid=$(head -n 1 "$1")
    case $pid in
        '' | *[!0-9]*) return 1 ;;
    esac
    echo "$pid"
}

tail_log() {
    local f
    for f in "$1"/server.out "$1"/log/*.log; do
        [ -f "$f" ] || continue
        echo "--- last lines of $f ---" >&2
        tail -n 20 "$f" >&2 || true
    done
}

# Stop PID: SIGTERM (a clean shutdown), then SIGKILL after WAIT tenths of a second.
stop_pid() {
    local pid=$1 wait=$2 waited=0
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid"; do
        if [ "$waited" -ge "$wait" ]; then
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    waited=0
    while [ -e "/proc/$pid" ] && [ "$waited" -lt 30 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
}

cmd_start() {
    local dir=$1 amqp dist epmd_port pid
    find_tools
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    if pid=$(pid_in "$dir/beam.pid") && alive "$pid"; then
        die "a node is already running in $dir (pid $pid); stop it first ($PROG stop $dir)"
    fi
    if [ -f "$dir/ports" ]; then
        read -r amqp dist epmd_port <"$dir/ports"
    else
        read -r amqp dist epmd_port < <(free_ports)
        echo "$amqp $dist $epmd_port" >"$dir/ports"
    fi
    if [ "$(id -u)" -eq 0 ]; then
        id rabbitmq >/dev/null 2>&1 || die "running as root needs the unprivileged" \
            "'rabbitmq' user: install the Debian package rabbitmq-server"
        chown -R rabbitmq: "$dir"
    fi
    chmod 700 "$dir"
    cat >"$dir/rabbitmq.conf" <<EOF
# forgeline throwaway node ($PROG)
loopback_users.guest = true
log.file.level = warning
log.console = false
EOF
    rm -f "$dir/rabbit.pid"

    # Our own epmd on its own port: stopped by its PID, never a system one.
    if ! { pid=$(pid_in "$dir/epmd.pid") && alive "$pid"; }; then
        (as_owner env -i PATH="$PATH" HOME="$dir" epmd -port "$epmd_port" -address 127.0.0.1) \
            >"$dir/epmd.log" 2>&1 </dev/null &
        echo $! >"$dir/epmd.pid"
    fi

    echo "$PROG: starting rabbitmq on 127.0.0.1:$amqp" >&2
    (
        cd "$dir"
        as_owner env -i PATH="$PATH" HOME="$dir" LANG=C.UTF-8 \
            ERL_EPMD_PORT="$epmd_port" \
            RABBITMQ_NODENAME="forgeline-$amqp@localhost" \
            RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
            RABBITMQ_NODE_PORT="$amqp" \
            RABBITMQ_DIST_PORT="$dist" \
            RABBITMQ_MNESIA_BASE="$dir/mnesia" \
            RABBITMQ_LOG_BASE="$dir/log" \
            RABBITMQ_PID_FILE="$dir/rabbit.pid" \
            RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
            RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
            RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
            "$SERVER"
    ) >"$dir/server.out" 2>&1 </dev/null &

    local waited=0
    while ! python3 -c "import socket; socket.create_connection(('127.0.0.1', $amqp), 1).close()" \
        2>/dev/null; do
        if [ "$waited" -ge 600 ]; then
            tail_log "$dir"
            die "the node in $dir did not listen on 127.0.0.1:$amqp within 60 s"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    pid=$(pid_in "$dir/rabbit.pid") || {
        tail_log "$dir"
        die "the node in $dir wrote no PID file"
    }
    echo "$pid" >"$dir/beam.pid"
    echo "amqp://guest:guest@127.0.0.1:$amqp/"
}

cmd_stop() {
    local dir=$1 pid
    if pid=$(pid_in "$dir/beam.pid"); then
        stop_pid "$pid" 300
        echo "$PROG: stopped node $pid in $dir" >&2
    fi
    rm -f "$dir/beam.pid"
    if pid=$(pid_in "$dir/epmd.pid"); then
        stop_pid "$pid" 30
        echo "$PROG: stopped epmd $pid in $dir" >&2
    fi
    rm -f "$dir/epmd.pid"
}

[ $# -ge 1 ] || usage
case $1 in
    start)
        [ $# -eq 2 ] || usage
        cmd_start "$2"
        ;;
    stop)
        [ $# -eq 2 ] || usage
        cmd_stop "$2"
        ;;
    *) usage ;;
esac
