# shellcheck shell=bash
# Redis (single node) for scripts/services.sh (sourced; helpers from lib.sh).
# redis_packages, redis_ping and the redis_node_* functions are also used by
# redis-cluster.sh.

REDIS_PORT="${KVSTORES_REDIS_PORT:-56379}"
REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"
# TLS listener (KVSTORES_SERVICES_TLS=1), besides the plain port.
REDIS_TLS_PORT="${KVSTORES_REDIS_TLS_PORT:-56380}"

redis_check() {
    port_setting KVSTORES_REDIS_PORT "$REDIS_PORT"
    port_setting KVSTORES_REDIS_TLS_PORT "$REDIS_TLS_PORT"
    ((REDIS_PORT != REDIS_TLS_PORT)) || die "KVSTORES_REDIS_PORT and KVSTORES_REDIS_TLS_PORT must differ"
}

redis_packages() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        echo redis-server
    fi
}

redis_ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }

# PING over TLS, checking the server's certificate against our CA.
redis_tls_ping() {
    [[ "$(redis-cli --tls --cacert "$(tls_file ca.pem)" -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]
}

# redis_tls_conf TLS_PORT: the redis.conf lines of a TLS listener on TLS_PORT
# (tls.sh's certificate; clients need none).
redis_tls_conf() {
    printf '%s\n' "tls-port $1" "tls-cert-file \"$(tls_file server.pem)\"" \
        "tls-key-file \"$(tls_file server.key)\"" "tls-ca-cert-file \"$(tls_file ca.pem)\"" \
        "tls-auth-clients no"
}

# The TLS port of the node of DIR (from its redis.conf), if it has one.
redis_conf_tls_port() { sed -n 's/^tls-port \([0-9][0-9]*\)$/\1/p' "$1/redis.conf" 2>/dev/null || true; }

# redis_node_conf NAME PORT DIR [LINE...]: a fresh node directory DIR with its
# redis.conf (the LINEs appended), which a restart on kept data reuses.
redis_node_conf() {
    local name=$1 port=$2 dir=$3
    shift 3
    fresh_dir "$dir"
    {
        printf '# kvstores test node %s: loopback only, non-default port\n' "$name"
        printf '%s\n' "bind 127.0.0.1" "port $port" "daemonize yes" \
            "pidfile \"$dir/redis.pid\"" "logfile \"$STATE/logs/$name.log\"" "dir \"$dir\""
        # No RDB snapshots. No persistence at all for a throwaway server; the
        # append-only file, fsynced at every write, when durable.
        printf '%s\n' "save \"\""
        if ((DURABLE)); then
            printf '%s\n' "appendonly yes" "appendfsync always"
        else
            printf '%s\n' "appendonly no"
        fi
        (($# == 0)) || printf '%s\n' "$@"
    } >"$dir/redis.conf"
}

# redis_node_launch NAME PORT DIR: start the node of DIR/redis.conf (its log
# made by new_log NAME), record its pid and wait until it answers PING (on its
# TLS port too, if it has one).
redis_node_launch() {
    local name=$1 port=$2 dir=$3 logf="$STATE/logs/$1.log" tls_port
    # A stale pidfile (a node that was killed) would be taken for the new one.
    rm -f "$dir/redis.pid"
    as_svc redis-server "$dir/redis.conf" >&2 ||
        fail "$name" "$logf" "redis-server failed to start"
    # The daemon writes its pidfile within milliseconds unless it died during
    # startup (its parent has already exited 0), so don't wait long for it.
    wait_for_t 10 "$name" "$logf" "" test -s "$dir/redis.pid"
    record_pid "$name" "$(cat "$dir/redis.pid")"
    wait_for "$name" "$logf" "$(cat "$dir/redis.pid")" redis_ping "$port"
    tls_port=$(redis_conf_tls_port "$dir")
    if [[ -n $tls_port ]]; then
        wait_for "$name" "$logf" "$(cat "$dir/redis.pid")" redis_tls_ping "$tls_port"
    fi
}

# redis_node_start NAME PORT DIR [redis.conf LINE...]
redis_node_start() {
    local name=$1 port=$2 dir=$3
    new_log "$name" >/dev/null
    redis_node_conf "$@"
    redis_node_launch "$name" "$port" "$dir"
}

redis_start() {
    local -a tls=()
    if running redis "$REDIS_PORT"; then
        log "redis already running on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    redis_stop
    ensure_port_free "$REDIS_PORT" redis
    if ((TLS)); then
        ensure_port_free "$REDIS_TLS_PORT" redis
        mapfile -t tls < <(redis_tls_conf "$REDIS_TLS_PORT")
        log "starting redis on 127.0.0.1:$REDIS_PORT (TLS on 127.0.0.1:$REDIS_TLS_PORT)"
    else
        log "starting redis on 127.0.0.1:$REDIS_PORT"
    fi
    redis_node_start redis "$REDIS_PORT" "$STATE/redis" "${tls[@]}"
}

redis_stop() { stop_recorded redis TERM; }

# stop_node 1: stop the server, keeping its directory (redis.conf, and its
# data when persistence is on).
redis_stop_node() {
    single_node redis "$1"
    node_running redis || return 0
    redis_stop
    mark_down redis
    log "redis stopped; its directory is kept in $STATE/redis"
}

# start_node 1: start it again from its kept directory and redis.conf.
redis_start_node() {
    local tls_port
    single_node redis "$1"
    node_stopped redis redis "$STATE/redis/redis.conf" || return 0
    ensure_port_free "$REDIS_PORT" redis
    tls_port=$(redis_conf_tls_port "$STATE/redis")
    [[ -z $tls_port ]] || ensure_port_free "$tls_port" redis
    log "starting redis on 127.0.0.1:$REDIS_PORT (kept directory $STATE/redis)"
    rotate_log redis
    new_log redis >/dev/null
    redis_node_launch redis "$REDIS_PORT" "$STATE/redis"
}

# The TLS URL when it was started with TLS (on the port its redis.conf says).
redis_env() {
    local tls_port
    if up_or_down redis; then
        printf "export KVSTORES_TEST_REDIS_URL='%s'\n" "$REDIS_URL"
        tls_port=$(redis_conf_tls_port "$STATE/redis")
        if [[ -n $tls_port ]]; then
            printf "export KVSTORES_TEST_REDIS_TLS_URL='rediss://127.0.0.1:%s/0'\n" "$tls_port"
        fi
    fi
}
