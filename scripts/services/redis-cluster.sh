# shellcheck shell=bash source-path=SCRIPTDIR
# Three-primary Redis Cluster for scripts/services.sh (sourced; helpers from
# lib.sh, node helpers from redis.sh).

if ! declare -F redis_node_start >/dev/null; then
    # shellcheck source=redis.sh
    source "$(dirname -- "${BASH_SOURCE[0]}")/redis.sh"
fi

# Space- or comma-separated; redis-cli --cluster create needs at least three.
IFS=' ,' read -r -a CLUSTER_PORTS <<<"${KVSTORES_REDIS_CLUSTER_PORTS:-57001 57002 57003}"
# The cluster bus defaults to port+10000, i.e. >65535 for 57001; set it explicitly.
CLUSTER_BUS_OFFSET=-10000
CLUSTER_URL="redis+cluster://127.0.0.1:${CLUSTER_PORTS[0]:-}"

redis_cluster_check() {
    local port
    ((${#CLUSTER_PORTS[@]} >= 3)) ||
        die "KVSTORES_REDIS_CLUSTER_PORTS: need at least three ports, got '${CLUSTER_PORTS[*]}'"
    for port in "${CLUSTER_PORTS[@]}"; do
        port_setting KVSTORES_REDIS_CLUSTER_PORTS "$port"
        ((port + CLUSTER_BUS_OFFSET >= 1)) ||
            die "KVSTORES_REDIS_CLUSTER_PORTS: $port is too low (bus port is port${CLUSTER_BUS_OFFSET})"
    done
}

redis_cluster_packages() { redis_packages; }

# Every node reports cluster_state:ok and knows all its peers.
cluster_ok() {
    local port info
    for port in "${CLUSTER_PORTS[@]}"; do
        info=$(redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null) || return 1
        [[ $info == *cluster_state:ok* ]] || return 1
        [[ $info == *"cluster_known_nodes:${#CLUSTER_PORTS[@]}"$'\r'* ]] || return 1
    done
}

cluster_running() {
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        running "redis-cluster-$port" "$port" || return 1
    done
}

redis_cluster_start() {
    local port createlog="$STATE/logs/redis-cluster-create.log"
    local -a addrs=()
    if cluster_running && cluster_ok; then
        log "redis cluster already running on 127.0.0.1:${CLUSTER_PORTS[*]}"
        return 0
    fi
    # Partial/broken cluster of ours: rebuild from scratch.
    redis_cluster_stop
    for port in "${CLUSTER_PORTS[@]}"; do
        ensure_port_free "$port" redis-cluster
        ensure_port_free "$((port + CLUSTER_BUS_OFFSET))" redis-cluster
    done
    log "starting redis cluster on 127.0.0.1:${CLUSTER_PORTS[*]}"
    rm -rf "$STATE/redis-cluster"
    install -d -m 755 "$STATE/redis-cluster"
    for port in "${CLUSTER_PORTS[@]}"; do
        redis_node_start "redis-cluster-$port" "$port" "$STATE/redis-cluster/$port" \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --cluster-port "$((port + CLUSTER_BUS_OFFSET))"
        addrs+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
        </dev/null >"$createlog" 2>&1 || fail redis-cluster "$createlog" "redis-cli --cluster create failed"
    wait_for redis-cluster "$createlog" "" cluster_ok
}

redis_cluster_stop() {
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        stop_recorded "redis-cluster-$port" TERM
    done
}

# Only a complete cluster of ours counts.
redis_cluster_env() {
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        recorded_pid "redis-cluster-$port" >/dev/null || return 0
    done
    printf "export KVSTORES_TEST_REDIS_CLUSTER_URL='%s'\n" "$CLUSTER_URL"
}
