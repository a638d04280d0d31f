# Shared by the bench scripts that start servers (sourced, not run): run-peers.sh and
# compare-queues.sh. Stopping only what the calling script started (by the pids it recorded
# under $PIDS, checked against the process name), polling with deadlines, apt-get, and
# starting `weir serve` and RabbitMQ (Debian's package, run as the caller on private
# loopback ports with everything under $DATA and $LOGS).
#
# The caller defines `say` (its progress line), `stop_all` (what on_exit stops), the arrays
# FAILED, and the variables: PIDS, LOGS, DATA, INSTALL, READY_TIMEOUT_SECS,
# STOP_GRACE_SECS, WEIR_BIN, WEIR_PORT, RABBITMQ_NODE, RABBITMQ_BIN, RABBITMQ_AMQP_PORT,
# RABBITMQ_STREAM_PORT, RABBITMQ_DIST_PORT, RABBITMQ_EPMD_PORT.
# shellcheck shell=bash disable=SC2034 # UPDATED and CHILD_PID are the callers' too.

# --- Stopping: only what this script started, by the pids it recorded ---------------------

# The command name a pid file's process must have to be ours (a recycled pid is left alone).
expected_comm() {
    case "$1" in
        weir|weir-kafka) echo weir ;;
        tansu) echo tansu ;;
        nats) echo nats-server ;;
        redis) echo redis-server ;;
        rabbitmq) echo beam.smp ;;
        epmd) echo epmd ;;
    esac
}

pid_alive_and_ours() {
    local name="$1" pid="$2" comm
    comm="$(ps -o comm= -p "$pid" 2>/dev/null || true)"
    [ -n "$comm" ] && [ "$comm" = "$(expected_comm "$name")" ]
}

# Stops the server recorded in $PIDS/<name>.pid: TERM, then KILL after the grace period.
stop_recorded() {
    local name="$1" file="$PIDS/$1.pid" pid deadline
    [ -f "$file" ] || return 0
    pid="$(cat "$file")"
    if pid_alive_and_ours "$name" "$pid"; then
        say "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + STOP_GRACE_SECS))
        while pid_alive_and_ours "$name" "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
        if pid_alive_and_ours "$name" "$pid"; then
            say "$name (pid $pid) did not stop in ${STOP_GRACE_SECS}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

rabbitmq_env() {
    export HOME="$DATA/rabbitmq/home" \
        RABBITMQ_NODENAME="$RABBITMQ_NODE" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$RABBITMQ_AMQP_PORT" \
        RABBITMQ_DIST_PORT="$RABBITMQ_DIST_PORT" \
        ERL_EPMD_PORT="$RABBITMQ_EPMD_PORT" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_MNESIA_BASE="$DATA/rabbitmq/mnesia" \
        RABBITMQ_LOG_BASE="$LOGS/rabbitmq" \
        RABBITMQ_CONFIG_FILE="$DATA/rabbitmq/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$DATA/rabbitmq/enabled_plugins" \
        RABBITMQ_PID_FILE="$DATA/rabbitmq/beam.pid" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

stop_rabbitmq() {
    if [ -f "$PIDS/rabbitmq.pid" ] && pid_alive_and_ours rabbitmq "$(cat "$PIDS/rabbitmq.pid")"; then
        # A clean stop first; stop_recorded kills what is left.
        ( rabbitmq_env; timeout "$STOP_GRACE_SECS" "$RABBITMQ_BIN/rabbitmqctl" -n "$RABBITMQ_NODE" stop \
            >>"$LOGS/rabbitmq-ctl.log" 2>&1 ) || true
    fi
    stop_recorded rabbitmq
    # The epmd this script started, on its own port (never the system's).
    if [ -f "$PIDS/epmd.pid" ] && pid_alive_and_ours epmd "$(cat "$PIDS/epmd.pid")"; then
        epmd -port "$RABBITMQ_EPMD_PORT" -kill >/dev/null 2>&1 || true
    fi
    stop_recorded epmd
}

# Stops the broker this run started as $1 (weir, weir-kafka) and checks that SIGTERM
# ended it cleanly (status 0).
stop_weir() {
    local name="${1:-weir}" pid status=0
    pid="$(cat "$PIDS/$name.pid" 2>/dev/null || true)"
    stop_recorded "$name"
    [ -n "$pid" ] || return 0
    # 127: not a child of this shell (the pid file of an earlier run).
    wait "$pid" 2>/dev/null || status=$?
    if [ "$status" != 0 ] && [ "$status" != 127 ]; then
        FAILED+=("$name: the broker exited with status $status when stopped (see $LOGS/$name.log)")
    fi
}

# The workload running when a signal came (its `timeout`, which passes TERM on to it).
CHILD_PID=""

on_exit() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$CHILD_PID" ]; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
    fi
    stop_all
    exit "$status"
}

# Runs "$@" in the background and waits for it, so that a signal to this script is acted
# on at once rather than when the workload ends; returns its status.
run_child() {
    local status=0
    "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" || status=$?
    CHILD_PID=""
    return "$status"
}

# --- Waiting: poll with a deadline -------------------------------------------------------

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Fails if anything already listens on a port a server is about to get.
port_free() {
    if port_open "$1"; then
        say "port $1 is already in use by a process this script did not start: set $2 to a free port"
        return 1
    fi
}

# Waits until `$2...` succeeds, for at most READY_TIMEOUT_SECS; $1 names what is awaited.
wait_until() {
    local what="$1" deadline=$((SECONDS + READY_TIMEOUT_SECS))
    shift
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "$what not ready after ${READY_TIMEOUT_SECS}s"
            return 1
        fi
        sleep 0.2
    done
}

# --- Installing --------------------------------------------------------------------------

UPDATED=0
apt_install() {
    if [ "$INSTALL" != 1 ]; then
        say "not installing $* (WEIR_PEER_INSTALL=$INSTALL)"
        return 1
    fi
    if [ "$UPDATED" = 0 ]; then
        say "apt-get update"
        apt-get update -qq >>"$LOGS/apt.log" 2>&1 || return 1
        UPDATED=1
    fi
    say "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$LOGS/apt.log" 2>&1
}

# --- Starting ----------------------------------------------------------------------------

weir_ready() {
    "$WEIR_BIN" topic list --brokers "127.0.0.1:$WEIR_PORT" >/dev/null 2>&1
}

start_weir() {
    port_free "$WEIR_PORT" WEIR_PORT || return 1
    mkdir -p "$DATA/weir"
    # One broker, no admin HTTP endpoint; topics take their settings from `weir bench`.
    "$WEIR_BIN" serve --data-dir "$DATA/weir" --listen "127.0.0.1:$WEIR_PORT" \
        --admin-listen off >"$LOGS/weir.log" 2>&1 &
    echo $! >"$PIDS/weir.pid"
    wait_until "weir serve on port $WEIR_PORT" weir_ready
}

rabbitmq_ready() {
    port_open "$RABBITMQ_AMQP_PORT" && port_open "$RABBITMQ_STREAM_PORT" &&
        "$RABBITMQ_BIN/rabbitmqctl" -n "$RABBITMQ_NODE" await_startup --timeout 5 >/dev/null 2>&1
}

start_rabbitmq() {
    local port
    for port in RABBITMQ_STREAM_PORT RABBITMQ_AMQP_PORT RABBITMQ_DIST_PORT RABBITMQ_EPMD_PORT; do
        port_free "${!port}" "$port" || return 1
    done
    mkdir -p "$DATA/rabbitmq/home" "$DATA/rabbitmq/mnesia" "$LOGS/rabbitmq"
    cat >"$DATA/rabbitmq/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$RABBITMQ_AMQP_PORT
stream.listeners.tcp.1 = 127.0.0.1:$RABBITMQ_STREAM_PORT
# Clients connect to the address the node advertises for a stream's leader.
stream.advertised_host = 127.0.0.1
stream.advertised_port = $RABBITMQ_STREAM_PORT
EOF
    echo '[rabbitmq_stream].' >"$DATA/rabbitmq/enabled_plugins"
    (
        rabbitmq_env
        # Our own epmd, on its own port and loopback, so stopping it touches no other node.
        epmd -port "$RABBITMQ_EPMD_PORT" -address 127.0.0.1 -daemon
    )
    # `epmd -daemon` forks, and the process it forked forks the daemon: until the daemon
    # listens, the middle one may still be there under the same command line. Then find
    # the daemon by its command line (ours: our port).
    wait_until "epmd on port $RABBITMQ_EPMD_PORT" port_open "$RABBITMQ_EPMD_PORT" || return 1
    local epmd_pid
    epmd_pid="$(pgrep -f -x "epmd -port $RABBITMQ_EPMD_PORT -address 127.0.0.1 -daemon" | head -n1 || true)"
    [ -n "$epmd_pid" ] && echo "$epmd_pid" >"$PIDS/epmd.pid"
    (
        rabbitmq_env
        exec "$RABBITMQ_BIN/rabbitmq-server" >"$LOGS/rabbitmq-server.out" 2>&1
    ) &
    local launcher=$!
    # The node writes its OS pid once booted; until then, watch the launcher.
    local deadline=$((SECONDS + READY_TIMEOUT_SECS))
    until [ -s "$DATA/rabbitmq/beam.pid" ]; do
        if ! kill -0 "$launcher" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            say "rabbitmq-server did not start: see $LOGS/rabbitmq-server.out"
            return 1
        fi
        sleep 0.2
    done
    cp "$DATA/rabbitmq/beam.pid" "$PIDS/rabbitmq.pid"
    ( rabbitmq_env; wait_until "RabbitMQ on ports $RABBITMQ_AMQP_PORT (AMQP) and $RABBITMQ_STREAM_PORT (streams)" rabbitmq_ready )
}
