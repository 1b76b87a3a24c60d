# shellcheck shell=bash source-path=SCRIPTDIR
# Three-node Apache Cassandra 5.0 cluster for scripts/services.sh (sourced;
# helpers from lib.sh, node helpers and the jar cache from cassandra.sh).
#
# The nodes listen on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (Linux answers all of
# 127/8 without setup), each with the same CQL and storage port, so clients see
# a real multi-host cluster. All three are seeds, with auto_bootstrap off and
# evenly spaced fixed tokens: they start together instead of joining one by one.

if ! declare -F cassandra_launch >/dev/null; then
    # shellcheck source=cassandra.sh
    source "$(dirname -- "${BASH_SOURCE[0]}")/cassandra.sh"
fi

CASSANDRA_CLUSTER_IPS=(127.0.0.1 127.0.0.2 127.0.0.3)
# Murmur3 tokens splitting the ring in three equal parts.
CASSANDRA_CLUSTER_TOKENS=(-9223372036854775808 -3074457345618258603 3074457345618258602)
CASSANDRA_CLUSTER_PORT="${KVSTORES_CASSANDRA_CLUSTER_PORT:-59043}"
CASSANDRA_CLUSTER_STORAGE_PORT="${KVSTORES_CASSANDRA_CLUSTER_STORAGE_PORT:-57101}"
# JMX listens on 127.0.0.1 only, so each node needs its own port.
IFS=' ,' read -r -a CASSANDRA_CLUSTER_JMX_PORTS <<<"${KVSTORES_CASSANDRA_CLUSTER_JMX_PORTS:-57201 57202 57203}"
# The stores create the keyspace (replication factor 3) and read and write at QUORUM.
CASSANDRA_CLUSTER_URL="cassandra://$(
    IFS=,
    printf '%s' "${CASSANDRA_CLUSTER_IPS[*]}"
):${CASSANDRA_CLUSTER_PORT}/kvstores_test?replication_factor=3&consistency=QUORUM"

cassandra_cluster_check() {
    local p
    local -A seen=()
    port_setting KVSTORES_CASSANDRA_CLUSTER_PORT "$CASSANDRA_CLUSTER_PORT"
    port_setting KVSTORES_CASSANDRA_CLUSTER_STORAGE_PORT "$CASSANDRA_CLUSTER_STORAGE_PORT"
    ((${#CASSANDRA_CLUSTER_JMX_PORTS[@]} == ${#CASSANDRA_CLUSTER_IPS[@]})) ||
        die "KVSTORES_CASSANDRA_CLUSTER_JMX_PORTS: need ${#CASSANDRA_CLUSTER_IPS[@]} ports, got '${CASSANDRA_CLUSTER_JMX_PORTS[*]}'"
    for p in "${CASSANDRA_CLUSTER_JMX_PORTS[@]}"; do
        port_setting KVSTORES_CASSANDRA_CLUSTER_JMX_PORTS "$p"
    done
    # Every one of these is bound on 127.0.0.1 by one node or another.
    for p in "$CASSANDRA_PORT" "$CASSANDRA_STORAGE_PORT" "$CASSANDRA_JMX_PORT" \
        "$CASSANDRA_CLUSTER_PORT" "$CASSANDRA_CLUSTER_STORAGE_PORT" "${CASSANDRA_CLUSTER_JMX_PORTS[@]}"; do
        [[ -z ${seen[$p]:-} ]] ||
            die "the KVSTORES_CASSANDRA_* and KVSTORES_CASSANDRA_CLUSTER_* ports must all differ (two are $p)"
        seen[$p]=1
    done
}

cassandra_cluster_packages() { cassandra_packages; }

# Node I (0-based) serves CQL and its log has seen every other node come up.
cassandra_cluster_node_ready() {
    local i=$1 j
    cassandra_cql_ready "${CASSANDRA_CLUSTER_IPS[i]}" "$CASSANDRA_CLUSTER_PORT" || return 1
    for j in "${!CASSANDRA_CLUSTER_IPS[@]}"; do
        ((j != i)) || continue
        grep -qF "InetAddress /${CASSANDRA_CLUSTER_IPS[j]}:$CASSANDRA_CLUSTER_STORAGE_PORT is now UP" \
            "$STATE/logs/cassandra-cluster-$((i + 1)).log" || return 1
    done
}

cassandra_cluster_ready() {
    local i
    for i in "${!CASSANDRA_CLUSTER_IPS[@]}"; do
        recorded_pid "cassandra-cluster-$((i + 1))" >/dev/null && cassandra_cluster_node_ready "$i" ||
            return 1
    done
}

# Launch only; cassandra_cluster_wait (after every server was launched) waits
# for the three nodes to serve CQL and see each other.
cassandra_cluster_start() {
    local dir="$STATE/cassandra-cluster" jars java i ip seeds
    if cassandra_cluster_ready; then
        log "cassandra cluster already running on ${CASSANDRA_CLUSTER_IPS[*]} port $CASSANDRA_CLUSTER_PORT"
        return 0
    fi
    # Partial/broken cluster of ours: rebuild from scratch.
    cassandra_cluster_stop
    for i in "${!CASSANDRA_CLUSTER_IPS[@]}"; do
        ip=${CASSANDRA_CLUSTER_IPS[i]}
        cassandra_ensure_port_free "$ip" "$CASSANDRA_CLUSTER_PORT" cassandra-cluster
        cassandra_ensure_port_free "$ip" "$CASSANDRA_CLUSTER_STORAGE_PORT" cassandra-cluster
        ensure_port_free "${CASSANDRA_CLUSTER_JMX_PORTS[i]}" cassandra-cluster
    done
    java=$(cassandra_java)
    jars=$(cassandra_jars)
    log "starting cassandra cluster on ${CASSANDRA_CLUSTER_IPS[*]} port $CASSANDRA_CLUSTER_PORT (storage port $CASSANDRA_CLUSTER_STORAGE_PORT, JMX ${CASSANDRA_CLUSTER_JMX_PORTS[*]})"
    rm -rf "$dir"
    install -d -m 755 "$dir"
    # One copy of the jars for the three nodes (the cache may be unreadable to
    # the service user).
    cp -R "$jars" "$dir/lib"
    seeds=$(printf "%s:$CASSANDRA_CLUSTER_STORAGE_PORT," "${CASSANDRA_CLUSTER_IPS[@]}")
    for i in "${!CASSANDRA_CLUSTER_IPS[@]}"; do
        cassandra_write_conf "$dir/node$((i + 1))" kvstores-cassandra-cluster \
            "${CASSANDRA_CLUSTER_IPS[i]}" "$CASSANDRA_CLUSTER_PORT" "$CASSANDRA_CLUSTER_STORAGE_PORT" \
            "${seeds%,}" "${CASSANDRA_CLUSTER_TOKENS[i]}"
        cassandra_launch "cassandra-cluster-$((i + 1))" "$dir/node$((i + 1))" "$dir/lib" "$java" \
            "${CASSANDRA_CLUSTER_JMX_PORTS[i]}"
    done
}

cassandra_cluster_wait() {
    local i name pid deadline=$((SECONDS + CASSANDRA_WAIT))
    for i in "${!CASSANDRA_CLUSTER_IPS[@]}"; do
        name="cassandra-cluster-$((i + 1))"
        pid=$(recorded_pid "$name") ||
            fail "$name" "$STATE/logs/$name.log" "server process exited during startup"
        # One deadline for all: the nodes boot side by side.
        wait_for_t "$((deadline > SECONDS ? deadline - SECONDS : 0))" "$name" \
            "$STATE/logs/$name.log" "$pid" cassandra_cluster_node_ready "$i"
    done
    # A node may have died while we waited for a later one.
    cassandra_cluster_ready ||
        fail cassandra-cluster "$STATE/logs/cassandra-cluster-1.log" "a node went away during startup"
    log "cassandra cluster serves CQL on ${CASSANDRA_CLUSTER_IPS[*]} port $CASSANDRA_CLUSTER_PORT"
}

cassandra_cluster_stop() {
    local i
    local -a names=()
    for i in "${!CASSANDRA_CLUSTER_IPS[@]}"; do
        names+=("cassandra-cluster-$((i + 1))")
    done
    cassandra_stop_nodes "${names[@]}"
}

# Exported while at least one node of ours is alive or stopped by stop-node,
# not only when all three are alive: `services.sh stop-node` takes nodes down on
# purpose, and the degraded cluster still serves (the URL lists every node;
# clients route around the down one). `start` rebuilds a cluster with a dead
# node from scratch, so a partial cluster only lasts as long as such a test
# wants it to.
cassandra_cluster_env() {
    local i
    for i in "${!CASSANDRA_CLUSTER_IPS[@]}"; do
        if up_or_down "cassandra-cluster-$((i + 1))"; then
            printf "export KVSTORES_TEST_CASSANDRA_CLUSTER_URL='%s'\n" "$CASSANDRA_CLUSTER_URL"
            return 0
        fi
    done
}

# ------------------------------------------------- single nodes (stop-node)

# Validated 0-based index of 1-based node number N.
cassandra_cluster_node_index() {
    if ! [[ $1 =~ ^[1-9][0-9]{0,2}$ ]] || (($1 > ${#CASSANDRA_CLUSTER_IPS[@]})); then
        die "cassandra-cluster: node must be 1-${#CASSANDRA_CLUSTER_IPS[@]}, got '$1'"
    fi
    printf '%s\n' "$(($1 - 1))"
}

# stop_node N: stop node N only (SIGTERM, SIGKILL after 20 s, as a whole-cluster
# stop does); its directory is kept for start_node.
cassandra_cluster_stop_node() {
    local i name
    i=$(cassandra_cluster_node_index "$1") || exit 1
    name="cassandra-cluster-$((i + 1))"
    node_running "$name" || return 0
    cassandra_stop_nodes "$name"
    mark_down "$name"
    log "$name stopped (${CASSANDRA_CLUSTER_IPS[i]}); data kept in $STATE/cassandra-cluster/node$((i + 1))"
}

# Byte sizes of the nodes' logs before a restart: their "is now UP" lines past
# these offsets are about the restarted node.
CASSANDRA_CLUSTER_LOG_OFFSETS=()

# Node I (restarted) serves CQL, has seen every other live node come up, and
# every other live node has seen it come up since the restart.
cassandra_cluster_node_rejoined() {
    local i=$1 j peerlog
    cassandra_cql_ready "${CASSANDRA_CLUSTER_IPS[i]}" "$CASSANDRA_CLUSTER_PORT" || return 1
    for j in "${!CASSANDRA_CLUSTER_IPS[@]}"; do
        ((j != i)) || continue
        recorded_pid "cassandra-cluster-$((j + 1))" >/dev/null || continue
        grep -qF "InetAddress /${CASSANDRA_CLUSTER_IPS[j]}:$CASSANDRA_CLUSTER_STORAGE_PORT is now UP" \
            "$STATE/logs/cassandra-cluster-$((i + 1)).log" || return 1
        peerlog="$STATE/logs/cassandra-cluster-$((j + 1)).log"
        tail -c "+$((${CASSANDRA_CLUSTER_LOG_OFFSETS[j]:-0} + 1))" "$peerlog" 2>/dev/null |
            grep -qF "InetAddress /${CASSANDRA_CLUSTER_IPS[i]}:$CASSANDRA_CLUSTER_STORAGE_PORT is now UP" ||
            return 1
    done
}

# start_node N: restart node N, stopped by stop_node, on its kept config and
# data (commitlog replay and sstables; auto_bootstrap is off, so it just
# rejoins), and wait until it serves CQL and its live peers see it UP.
cassandra_cluster_start_node() {
    local dir="$STATE/cassandra-cluster" i j name ip logf pid java
    i=$(cassandra_cluster_node_index "$1") || exit 1
    name="cassandra-cluster-$((i + 1))"
    ip=${CASSANDRA_CLUSTER_IPS[i]}
    logf="$STATE/logs/$name.log"
    if recorded_pid "$name" >/dev/null; then
        log "$name is already running on $ip port $CASSANDRA_CLUSTER_PORT; nothing to do"
        return 0
    fi
    [[ -f $dir/node$((i + 1))/conf/cassandra.yaml && -d $dir/lib ]] ||
        die "$name: no kept node directory in $dir (start the cluster first: $0 start cassandra-cluster)"
    cassandra_ensure_port_free "$ip" "$CASSANDRA_CLUSTER_PORT" "$name"
    cassandra_ensure_port_free "$ip" "$CASSANDRA_CLUSTER_STORAGE_PORT" "$name"
    ensure_port_free "${CASSANDRA_CLUSTER_JMX_PORTS[i]}" "$name"
    java=$(cassandra_java)
    CASSANDRA_CLUSTER_LOG_OFFSETS=()
    for j in "${!CASSANDRA_CLUSTER_IPS[@]}"; do
        CASSANDRA_CLUSTER_LOG_OFFSETS[j]=$(stat -c %s "$STATE/logs/cassandra-cluster-$((j + 1)).log" 2>/dev/null || echo 0)
    done
    # cassandra_launch starts a fresh log: keep the previous run's.
    rotate_log "$name"
    log "starting $name on $ip port $CASSANDRA_CLUSTER_PORT (kept data in $dir/node$((i + 1)))"
    cassandra_launch "$name" "$dir/node$((i + 1))" "$dir/lib" "$java" "${CASSANDRA_CLUSTER_JMX_PORTS[i]}"
    pid=$(recorded_pid "$name") || fail "$name" "$logf" "server process exited during startup"
    wait_for_t "$CASSANDRA_WAIT" "$name" "$logf" "$pid" cassandra_cluster_node_rejoined "$i"
    log "$name serves CQL on $ip port $CASSANDRA_CLUSTER_PORT and its peers see it UP"
}
