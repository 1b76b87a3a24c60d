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

# redis-cli's reply to COMMAND on 127.0.0.1:PORT, without carriage returns.
cluster_cli() {
    local out
    out=$(redis-cli -h 127.0.0.1 -p "$@" 2>/dev/null) || return 1
    printf '%s\n' "${out//$'\r'/}"
}

# Every live node of ours (those stop-node stopped are left out) knows every
# node and sees every other live node as connected and not failing; and,
# unless a node is stopped (its slots may then be served by no one), reports
# cluster_state:ok and counts every primary as serving slots.
cluster_ok() {
    local port p info nodes line flags link down=0
    local -a live=() fields
    for port in "${CLUSTER_PORTS[@]}"; do
        if is_down "redis-cluster-$port"; then
            down=1
        else
            live+=("$port")
        fi
    done
    for port in "${live[@]}"; do
        info=$'\n'$(cluster_cli "$port" cluster info)$'\n' || return 1
        [[ $info == *$'\n'"cluster_known_nodes:${#CLUSTER_PORTS[@]}"$'\n'* ]] || return 1
        if ((!down)); then
            [[ $info == *$'\n'cluster_state:ok$'\n'* ]] || return 1
            [[ $info == *$'\n'"cluster_size:${#CLUSTER_PORTS[@]}"$'\n'* ]] || return 1
        fi
        nodes=$(cluster_cli "$port" cluster nodes) || return 1
        for p in "${live[@]}"; do
            # id ip:port@cport[,hostname] flags primary ping pong epoch link-state slots...
            line=$(grep -F " 127.0.0.1:$p@" <<<"$nodes") || return 1
            read -r -a fields <<<"$line"
            flags=",${fields[2]:-},"
            link=${fields[7]:-}
            [[ $link == connected ]] || return 1
            [[ $flags != *,fail,* && $flags != *,fail\?,* && $flags != *,handshake,* &&
                $flags != *,noaddr,* ]] || return 1
        done
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
            "cluster-enabled yes" "cluster-config-file nodes.conf" "cluster-node-timeout 5000" \
            "cluster-port $((port + CLUSTER_BUS_OFFSET))"
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

# Only a complete cluster of ours counts, nodes that stop-node stopped included.
redis_cluster_env() {
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        up_or_down "redis-cluster-$port" || return 0
    done
    printf "export KVSTORES_TEST_REDIS_CLUSTER_URL='%s'\n" "$CLUSTER_URL"
}

# ------------------------------------------------- single nodes (stop-node)

# Port of 1-based node number N (an index into KVSTORES_REDIS_CLUSTER_PORTS).
redis_cluster_node_port() {
    if ! [[ $1 =~ ^[1-9][0-9]{0,3}$ ]] || (($1 > ${#CLUSTER_PORTS[@]})); then
        die "redis-cluster: node must be 1-${#CLUSTER_PORTS[@]} (an index into KVSTORES_REDIS_CLUSTER_PORTS), got '$1'"
    fi
    printf '%s\n' "${CLUSTER_PORTS[$1 - 1]}"
}

# stop_node N: stop node N (SIGTERM), keeping its directory: nodes.conf (its
# identity, slots and peers), and its data when persistence is on. Returns at
# once: the rest of the cluster notices after the node timeout.
redis_cluster_stop_node() {
    local port name
    port=$(redis_cluster_node_port "$1") || exit 1
    name="redis-cluster-$port"
    node_running "$name" || return 0
    stop_recorded "$name" TERM
    mark_down "$name"
    log "$name stopped; its directory is kept in $STATE/redis-cluster/$port"
}

# start_node N: restart node N from its kept directory; it rejoins with its
# nodes.conf. Waits until every live node sees every live node connected and,
# unless another node is stopped, reports cluster_state:ok (cluster_ok).
redis_cluster_start_node() {
    local port name dir
    port=$(redis_cluster_node_port "$1") || exit 1
    name="redis-cluster-$port"
    dir="$STATE/redis-cluster/$port"
    node_stopped "$name" redis-cluster "$dir/nodes.conf" || return 0
    ensure_port_free "$port" "$name"
    ensure_port_free "$((port + CLUSTER_BUS_OFFSET))" "$name"
    log "starting $name on 127.0.0.1:$port (kept directory $dir)"
    rotate_log "$name"
    new_log "$name" >/dev/null
    redis_node_launch "$name" "$port" "$dir"
    wait_for "$name" "$STATE/logs/$name.log" "" cluster_ok
    for port in "${CLUSTER_PORTS[@]}"; do
        if is_down "redis-cluster-$port"; then
            log "$name rejoined the cluster; redis-cluster-$port is still stopped, so cluster_state may be fail"
            return 0
        fi
    done
    log "$name rejoined the cluster (cluster_state:ok on every node)"
}
