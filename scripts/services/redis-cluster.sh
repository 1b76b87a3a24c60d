# shellcheck shell=bash source-path=SCRIPTDIR
# Redis Cluster (three primaries by default, optionally with replicas) for
# scripts/services.sh (sourced; helpers from lib.sh, node helpers from
# redis.sh).

if ! declare -F redis_node_start >/dev/null; then
    # shellcheck source=redis.sh
    source "$(dirname -- "${BASH_SOURCE[0]}")/redis.sh"
fi

# Space- or comma-separated; redis-cli --cluster create needs at least three
# primaries.
IFS=' ,' read -r -a CLUSTER_PORTS <<<"${KVSTORES_REDIS_CLUSTER_PORTS:-57001 57002 57003}"
# Replicas per primary (redis-cli --cluster create --cluster-replicas): the
# ports are split into primaries and their replicas.
CLUSTER_REPLICAS="${KVSTORES_REDIS_CLUSTER_REPLICAS:-0}"
# cluster-node-timeout (ms): how long a node may be unreachable before it is
# failed (and a replica of a failed primary promoted).
CLUSTER_NODE_TIMEOUT="${KVSTORES_REDIS_CLUSTER_NODE_TIMEOUT:-5000}"
# The cluster bus defaults to port+10000, i.e. >65535 for 57001; set it explicitly.
CLUSTER_BUS_OFFSET=-10000
CLUSTER_URL="redis+cluster://127.0.0.1:${CLUSTER_PORTS[0]:-}"
# TLS ports (KVSTORES_SERVICES_TLS=1), one per node in the order of the
# ports; unset: each port+1000 (port+100 would give 57101, the default
# cassandra-cluster storage port, for the default 57001).
IFS=' ,' read -r -a CLUSTER_TLS_PORTS <<<"${KVSTORES_REDIS_CLUSTER_TLS_PORTS:-}"
CLUSTER_TLS_OFFSET=1000

redis_cluster_check() {
    local port p i n=${#CLUSTER_PORTS[@]}
    local -A seen=()
    [[ $CLUSTER_REPLICAS =~ ^[0-9]{1,2}$ ]] ||
        die "KVSTORES_REDIS_CLUSTER_REPLICAS: '$CLUSTER_REPLICAS' is not a replica count (0, 1, ...)"
    ((n % (CLUSTER_REPLICAS + 1) == 0 && n / (CLUSTER_REPLICAS + 1) >= 3)) ||
        die "KVSTORES_REDIS_CLUSTER_PORTS: with $CLUSTER_REPLICAS replica(s) per primary (KVSTORES_REDIS_CLUSTER_REPLICAS) the port count must be a multiple of $((CLUSTER_REPLICAS + 1)) and give at least three primaries, got $n port(s): '${CLUSTER_PORTS[*]}'"
    [[ $CLUSTER_NODE_TIMEOUT =~ ^[1-9][0-9]{0,8}$ ]] ||
        die "KVSTORES_REDIS_CLUSTER_NODE_TIMEOUT: '$CLUSTER_NODE_TIMEOUT' is not a timeout in milliseconds (a positive integer)"
    for port in "${CLUSTER_PORTS[@]}"; do
        port_setting KVSTORES_REDIS_CLUSTER_PORTS "$port"
        ((port + CLUSTER_BUS_OFFSET >= 1)) ||
            die "KVSTORES_REDIS_CLUSTER_PORTS: $port is too low (bus port is port${CLUSTER_BUS_OFFSET})"
    done
    # Checked when used, or when set: the default may be out of range.
    if ((TLS)) || ((${#CLUSTER_TLS_PORTS[@]} > 0)); then
        ((${#CLUSTER_TLS_PORTS[@]} == 0 || ${#CLUSTER_TLS_PORTS[@]} == n)) ||
            die "KVSTORES_REDIS_CLUSTER_TLS_PORTS: need one TLS port per port of KVSTORES_REDIS_CLUSTER_PORTS ($n), got '${CLUSTER_TLS_PORTS[*]}'"
        for i in "${!CLUSTER_PORTS[@]}"; do
            port_setting "KVSTORES_REDIS_CLUSTER_TLS_PORTS (unset: each port+$CLUSTER_TLS_OFFSET)" \
                "$(cluster_tls_port "$i")"
        done
    fi
    # Every node's port, bus port and TLS port are bound on 127.0.0.1.
    for i in "${!CLUSTER_PORTS[@]}"; do
        port=${CLUSTER_PORTS[i]}
        for p in "$port" "$((port + CLUSTER_BUS_OFFSET))" "$(cluster_tls_port "$i")"; do
            [[ -z ${seen[$p]:-} ]] ||
                die "KVSTORES_REDIS_CLUSTER_PORTS: the ports, their bus ports (port${CLUSTER_BUS_OFFSET}) and their TLS ports (KVSTORES_REDIS_CLUSTER_TLS_PORTS) must all differ (two are $p)"
            seen[$p]=1
        done
    done
}

# TLS port of node I (0-based).
cluster_tls_port() {
    printf '%s\n' "${CLUSTER_TLS_PORTS[$1]:-$((CLUSTER_PORTS[$1] + CLUSTER_TLS_OFFSET))}"
}

# Primaries of the cluster (the rest are their replicas).
cluster_primaries() { printf '%s\n' "$((${#CLUSTER_PORTS[@]} / (CLUSTER_REPLICAS + 1)))"; }

redis_cluster_packages() { redis_packages; }

# redis-cli's reply to COMMAND on 127.0.0.1:PORT, without carriage returns.
cluster_cli() {
    local out
    out=$(redis-cli -h 127.0.0.1 -p "$@" 2>/dev/null) || return 1
    printf '%s\n' "${out//$'\r'/}"
}

# Every live node of ours (those stop-node stopped are left out) knows every
# node, sees every other live node as connected and not failing, and, when a
# replica, has its replication link up; and, unless a node is stopped (its
# slots may then be served by no one), reports cluster_state:ok, counts every
# primary as serving slots and sees as many primaries and replicas as there
# should be (a new replica shows as a slotless primary until it has been told).
cluster_ok() {
    local port p info nodes line flags link down=0 primaries
    local -a live=() fields
    primaries=$(cluster_primaries)
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
        nodes=$(cluster_cli "$port" cluster nodes) || return 1
        if ((!down)); then
            [[ $info == *$'\n'cluster_state:ok$'\n'* ]] || return 1
            [[ $info == *$'\n'"cluster_size:$primaries"$'\n'* ]] || return 1
            [[ "$(grep -c -E '^[^ ]+ [^ ]+ ([^ ]*,)?master[, ]' <<<"$nodes")" == "$primaries" ]] ||
                return 1
            [[ "$(grep -c -E '^[^ ]+ [^ ]+ ([^ ]*,)?slave[, ]' <<<"$nodes")" == \
                "$((${#CLUSTER_PORTS[@]} - primaries))" ]] || return 1
        fi
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
        info=$'\n'$(cluster_cli "$port" info replication)$'\n' || return 1
        [[ $info != *$'\n'role:slave$'\n'* || $info == *$'\n'master_link_status:up$'\n'* ]] ||
            return 1
    done
}

cluster_running() {
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        running "redis-cluster-$port" "$port" || return 1
    done
}

redis_cluster_start() {
    local i port createlog="$STATE/logs/redis-cluster-create.log" tls_note=""
    local -a addrs=() tls=()
    if cluster_running && cluster_ok; then
        log "redis cluster already running on 127.0.0.1:${CLUSTER_PORTS[*]}"
        return 0
    fi
    # Partial/broken cluster of ours: rebuild from scratch.
    redis_cluster_stop
    for i in "${!CLUSTER_PORTS[@]}"; do
        port=${CLUSTER_PORTS[i]}
        ensure_port_free "$port" redis-cluster
        ensure_port_free "$((port + CLUSTER_BUS_OFFSET))" redis-cluster
        if ((TLS)); then
            ensure_port_free "$(cluster_tls_port "$i")" redis-cluster
            tls_note+=" $(cluster_tls_port "$i")"
        fi
    done
    [[ -z $tls_note ]] || tls_note="; TLS on$tls_note"
    log "starting redis cluster on 127.0.0.1:${CLUSTER_PORTS[*]} ($(cluster_primaries) primaries, $CLUSTER_REPLICAS replica(s) each, node timeout ${CLUSTER_NODE_TIMEOUT} ms$tls_note)"
    rm -rf "$STATE/redis-cluster"
    install -d -m 755 "$STATE/redis-cluster"
    for i in "${!CLUSTER_PORTS[@]}"; do
        port=${CLUSTER_PORTS[i]}
        tls=()
        if ((TLS)); then
            # The bus and replication speak TLS too; a node then announces its
            # TLS port to TLS clients and its plain port to plain ones.
            mapfile -t tls < <(redis_tls_conf "$(cluster_tls_port "$i")")
            tls+=("tls-cluster yes" "tls-replication yes")
        fi
        redis_node_start "redis-cluster-$port" "$port" "$STATE/redis-cluster/$port" \
            "cluster-enabled yes" "cluster-config-file nodes.conf" "cluster-node-timeout $CLUSTER_NODE_TIMEOUT" \
            "cluster-port $((port + CLUSTER_BUS_OFFSET))" "${tls[@]}"
        addrs+=("127.0.0.1:$port")
    done
    # redis-cli makes the first ports the primaries.
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$CLUSTER_REPLICAS" --cluster-yes \
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
    # Started with TLS: the first node's redis.conf has its TLS port.
    port=$(redis_conf_tls_port "$STATE/redis-cluster/${CLUSTER_PORTS[0]}")
    if [[ -n $port ]]; then
        printf "export KVSTORES_TEST_REDIS_CLUSTER_TLS_URL='rediss+cluster://127.0.0.1:%s'\n" "$port"
    fi
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
# once: the rest of the cluster notices after the node timeout (and, with
# replicas, promotes a replica of a stopped primary).
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
# nodes.conf (a primary whose replica took over comes back as a replica). Waits until every live node sees every live node connected and,
# unless another node is stopped, reports cluster_state:ok (cluster_ok).
redis_cluster_start_node() {
    local port name dir tls_port
    port=$(redis_cluster_node_port "$1") || exit 1
    name="redis-cluster-$port"
    dir="$STATE/redis-cluster/$port"
    node_stopped "$name" redis-cluster "$dir/nodes.conf" || return 0
    ensure_port_free "$port" "$name"
    ensure_port_free "$((port + CLUSTER_BUS_OFFSET))" "$name"
    tls_port=$(redis_conf_tls_port "$dir")
    [[ -z $tls_port ]] || ensure_port_free "$tls_port" "$name"
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
