# shellcheck shell=bash
# Redis (single node) for scripts/services.sh (sourced; helpers from lib.sh).
# redis_packages, redis_ping and redis_node_start are also used by
# redis-cluster.sh.

REDIS_PORT="${KVSTORES_REDIS_PORT:-56379}"
REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"

redis_check() { port_setting KVSTORES_REDIS_PORT "$REDIS_PORT"; }

redis_packages() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        echo redis-server
    fi
}

redis_ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }

# redis_node_start NAME PORT DIR [extra redis-server args...]
redis_node_start() {
    local name=$1 port=$2 dir=$3 logf
    shift 3
    logf=$(new_log "$name")
    fresh_dir "$dir"
    # No persistence: tests want a throwaway server.
    as_svc redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$logf" --dir "$dir" "$@" >&2 ||
        fail "$name" "$logf" "redis-server failed to start"
    # The daemon writes its pidfile within milliseconds unless it died during
    # startup (its parent has already exited 0), so don't wait long for it.
    wait_for_t 10 "$name" "$logf" "" test -s "$dir/redis.pid"
    record_pid "$name" "$(cat "$dir/redis.pid")"
    wait_for "$name" "$logf" "$(cat "$dir/redis.pid")" redis_ping "$port"
}

redis_start() {
    if running redis "$REDIS_PORT"; then
        log "redis already running on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    redis_stop
    ensure_port_free "$REDIS_PORT" redis
    log "starting redis on 127.0.0.1:$REDIS_PORT"
    redis_node_start redis "$REDIS_PORT" "$STATE/redis"
}

redis_stop() { stop_recorded redis TERM; }

redis_env() {
    if recorded_pid redis >/dev/null; then
        printf "export KVSTORES_TEST_REDIS_URL='%s'\n" "$REDIS_URL"
    fi
}
