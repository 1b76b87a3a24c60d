#!/usr/bin/env bash
# Start/stop real database servers for kvstores integration tests, as plain
# processes (no Docker, no systemd):
#
#   scripts/services.sh start [SERVICE ...]
#   scripts/services.sh stop  [SERVICE ...]
#   (SERVICE: postgres mysql redis redis-cluster ferretdb cassandra
#   cassandra-cluster dataapi; none: all of them)
#   scripts/services.sh env
#   scripts/services.sh stop-node  SERVICE N   (stop node N, 1-based; data kept)
#   scripts/services.sh start-node SERVICE N   (start it again on its data)
#   (N: 1 for single-node services; redis-cluster: an index into
#   KVSTORES_REDIS_CLUSTER_PORTS; cassandra-cluster: 1-3)
#
# `start`, `start-node` and `env` print `export KVSTORES_TEST_*_URL=...` lines
# on stdout and everything else on stderr, so `eval "$(scripts/services.sh
# start)"` works. A service with a node stopped by stop-node still prints its
# URL; `start-node` restarts the node on its kept data and settings, while
# `start` rebuilds such a service from scratch. stop-node stops only FerretDB
# for ferretdb (its PostgreSQL keeps the data) and only the emulator for
# dataapi; Redis nodes restart empty unless durable (see below). `dataapi`
# (an emulator of Astra DB's Data API, for the AstraDB tests) keeps its
# documents in the `cassandra` service and starts it when it is not running.
# All state (data, logs, pid files, env file) lives in
# ${KVSTORES_SERVICES_DIR:-/tmp/kvstores-services}. Must run as root (apt,
# useradd, runuser). Servers bind 127.0.0.1 on non-default ports so they never
# collide with system instances; KVSTORES_POSTGRES_PORT (55432),
# KVSTORES_MYSQL_PORT (53306), KVSTORES_REDIS_PORT (56379) and
# KVSTORES_REDIS_CLUSTER_PORTS ("57001 57002 57003"), KVSTORES_MONGODB_PORT
# (57017, FerretDB), KVSTORES_FERRETDB_POSTGRES_PORT (55433, its own
# PostgreSQL), KVSTORES_CASSANDRA_PORT (59042; storage port
# KVSTORES_CASSANDRA_STORAGE_PORT 57100, JMX KVSTORES_CASSANDRA_JMX_PORT 57199)
# and KVSTORES_CASSANDRA_CLUSTER_PORT (59043 on 127.0.0.1-3; storage port
# KVSTORES_CASSANDRA_CLUSTER_STORAGE_PORT 57101, JMX
# KVSTORES_CASSANDRA_CLUSTER_JMX_PORTS "57201 57202 57203") and
# KVSTORES_DATAAPI_PORT (58181, the Data API emulator) override them.
# KVSTORES_REDIS_CLUSTER_REPLICAS (0) gives each Redis Cluster primary that
# many replicas (the first ports are the primaries; the port count must be a
# multiple of replicas+1 with at least three primaries), and
# KVSTORES_REDIS_CLUSTER_NODE_TIMEOUT (5000) its cluster-node-timeout in ms.
#
# KVSTORES_SERVICES_DURABLE=1: `start` gives the servers durable settings
# instead of fast ones (PostgreSQL, FerretDB's included: fsync,
# synchronous_commit and full_page_writes on; MariaDB:
# innodb_flush_log_at_trx_commit=1; Redis and the Redis Cluster nodes:
# appendonly with appendfsync always; Cassandra nodes: commitlog_sync batch):
# an acknowledged write then survives a crash or SIGKILL, and Redis keeps its
# data across stop-node/start-node. start-node reuses the settings of the
# last start.
#
# KVSTORES_SERVICES_TLS=1: `start` also makes the servers speak TLS, with a
# throw-away CA made once per state dir in $STATE/tls (scripts/services/tls.sh:
# ca.pem, server.pem/server.key for 127.0.0.1-3 and localhost, and an unrelated
# wrong-ca.pem); plain connections keep working. PostgreSQL, MariaDB and
# Cassandra (single node) take TLS on their usual port; Redis listens on
# KVSTORES_REDIS_TLS_PORT (56380) too, FerretDB on KVSTORES_MONGODB_TLS_PORT
# (57018), and each Redis Cluster node on its port of
# KVSTORES_REDIS_CLUSTER_TLS_PORTS (unset: each port+1000), with the cluster
# bus and replication over TLS. Extra env lines: KVSTORES_TEST_{POSTGRES,
# MYSQL,REDIS,REDIS_CLUSTER,MONGODB}_TLS_URL, KVSTORES_TEST_CASSANDRA_TLS_CA,
# KVSTORES_TEST_TLS_CA and KVSTORES_TEST_TLS_WRONG_CA. No client certificates.
#
# Each server is one file, scripts/services/<name>.sh, defining (with <fn> the
# name with "-" turned into "_", e.g. redis_cluster):
#   <fn>_packages  print the apt packages it needs that are missing, one a line
#   <fn>_start     start it unless ours is already running (idempotent)
#   <fn>_wait      (optional) wait until what <fn>_start launched serves; runs
#                  after every requested server was started, so slow ones boot
#                  side by side
#   <fn>_stop      stop only the processes of it that we started
#   <fn>_env       print its `export KVSTORES_TEST_*_URL='...'` line if ours runs
#   <fn>_check     (optional) validate its settings; runs before every command
#   <fn>_stop_node N / <fn>_start_node N
#                  stop node N (1-based; single-node services accept only 1)
#                  keeping its data, and mark it down (lib.sh's mark_down) /
#                  start it again on that data and its kept settings, and wait
#                  until it serves and its peers see it; <fn>_env must still
#                  print the URL while a node is down (lib.sh's up_or_down)
# The helpers they use live in scripts/services/lib.sh. Adding a server is one
# new file plus its name in ALL_SERVICES below.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

STATE="${KVSTORES_SERVICES_DIR:-/tmp/kvstores-services}"
WAIT_SECS="${KVSTORES_SERVICES_WAIT:-60}"
# 1: servers started by `start` run with durable settings (see the header).
DURABLE="${KVSTORES_SERVICES_DURABLE:-0}"
# 1: servers started by `start` also speak TLS (see the header).
TLS="${KVSTORES_SERVICES_TLS:-0}"
# In this order: start order of the default set, and order of the env lines.
# dataapi last: its start waits for cassandra, so the other servers boot meanwhile.
ALL_SERVICES=(postgres mysql redis redis-cluster ferretdb cassandra cassandra-cluster dataapi)

SERVICES_LIB="$(dirname -- "$(realpath -- "${BASH_SOURCE[0]}")")/services"
# shellcheck source=services/lib.sh
source "$SERVICES_LIB/lib.sh"
# shellcheck source=services/tls.sh
source "$SERVICES_LIB/tls.sh"
for _s in "${ALL_SERVICES[@]}"; do
    # shellcheck source=/dev/null
    source "$SERVICES_LIB/$_s.sh"
done
unset _s

usage() {
    # The header down to the paragraph on the state dir.
    sed -n '2,/^# All state/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# Function prefix of a service: redis-cluster -> redis_cluster.
fn() { printf '%s\n' "${1//-/_}"; }

# Install (with apt) whatever server packages the requested services lack.
ensure_packages() {
    local -a pkgs=() need
    local s p
    for s in "$@"; do
        mapfile -t need < <("$(fn "$s")_packages")
        for p in "${need[@]}"; do
            [[ -z $p || " ${pkgs[*]} " == *" $p "* ]] || pkgs+=("$p")
        done
    done
    ((${#pkgs[@]} > 0)) || return 0
    apt_install "${pkgs[@]}"
}

# Env file lists every service of ours that is currently alive.
write_env() {
    local out="" line s
    for s in "${ALL_SERVICES[@]}"; do
        line=$("$(fn "$s")_env")
        [[ -z $line ]] || out+="$line"$'\n'
    done
    # The CA (and the wrong one) once some server of ours speaks TLS.
    if [[ $out == *_TLS_* ]]; then
        line=$(tls_env)
        [[ -z $line ]] || out+="$line"$'\n'
    fi
    if [[ -n $out ]]; then
        printf '%s' "$out" >"$STATE/env.tmp"
        mv -f "$STATE/env.tmp" "$STATE/env"
    else
        rm -f "$STATE/env"
    fi
}

# ------------------------------------------------------------- commands

# Validate service names into SERVICES; default to all of them.
SERVICES=()
parse_services() {
    local s
    SERVICES=()
    (($# > 0)) || set -- "${ALL_SERVICES[@]}"
    for s in "$@"; do
        [[ " ${ALL_SERVICES[*]} " == *" $s "* ]] ||
            die "unknown service '$s' (expected: ${ALL_SERVICES[*]})"
        SERVICES+=("$s")
    done
}

cmd_start() {
    local s
    parse_services "$@"
    install -d -m 755 "$STATE" "$STATE/pids"
    take_lock
    ensure_user
    ensure_state_dir
    ensure_packages "${SERVICES[@]}"
    if ((TLS)); then
        tls_ensure
    fi
    for s in "${SERVICES[@]}"; do
        "$(fn "$s")_start"
    done
    for s in "${SERVICES[@]}"; do
        if declare -F "$(fn "$s")_wait" >/dev/null; then
            "$(fn "$s")_wait"
        fi
    done
    write_env
    cat "$STATE/env"
}

cmd_stop() {
    local s
    parse_services "$@"
    [[ -d $STATE/pids ]] || {
        log "nothing to stop ($STATE/pids does not exist)"
        return 0
    }
    take_lock
    for s in "${SERVICES[@]}"; do
        "$(fn "$s")_stop"
        # Next start is from scratch anyway; logs are kept for post-mortems.
        rm -rf "${STATE:?}/$s"
    done
    write_env
}

# SERVICE N: every service has per-node hooks (<fn>_stop_node and
# <fn>_start_node); N is validated by them.
node_service() {
    (($# == 2)) || usage
    [[ " ${ALL_SERVICES[*]} " == *" $1 "* ]] ||
        die "unknown service '$1' (expected: ${ALL_SERVICES[*]})"
    if ! declare -F "$(fn "$1")_stop_node" >/dev/null || ! declare -F "$(fn "$1")_start_node" >/dev/null; then
        die "service '$1' has no per-node stop/start (<fn>_stop_node/<fn>_start_node hooks)"
    fi
}

cmd_stop_node() {
    node_service "$@"
    [[ -d $STATE/pids ]] || die "$1 is not running ($STATE/pids does not exist)"
    take_lock
    "$(fn "$1")_stop_node" "$2"
    write_env
}

cmd_start_node() {
    node_service "$@"
    [[ -d $STATE/pids ]] || die "$1 is not running ($STATE/pids does not exist); run: $0 start $1"
    take_lock
    ensure_user
    ensure_state_dir
    "$(fn "$1")_start_node" "$2"
    write_env
    cat "$STATE/env"
}

cmd_env() {
    [[ -s $STATE/env ]] || die "no services running ($STATE/env missing); run: $0 start"
    cat "$STATE/env"
}

main() {
    local s
    (($# > 0)) || usage
    local cmd=$1
    shift
    # Absolute, since it ends up in server configs; never "/" (we rm -rf below it).
    STATE=$(realpath -m -- "$STATE")
    [[ $STATE != / ]] || die "refusing to use / as KVSTORES_SERVICES_DIR"
    flag_setting KVSTORES_SERVICES_DURABLE "$DURABLE"
    flag_setting KVSTORES_SERVICES_TLS "$TLS"
    for s in "${ALL_SERVICES[@]}"; do
        if declare -F "$(fn "$s")_check" >/dev/null; then
            "$(fn "$s")_check"
        fi
    done
    case $cmd in
    start | stop)
        ((EUID == 0)) || die "must run as root (installs packages, switches users)"
        "cmd_$cmd" "$@"
        ;;
    stop-node | start-node)
        ((EUID == 0)) || die "must run as root (signals and launches the service user's processes)"
        "cmd_${cmd//-/_}" "$@"
        ;;
    env)
        (($# == 0)) || usage
        cmd_env
        ;;
    -h | --help | help) usage ;;
    *) usage ;;
    esac
}

main "$@"
