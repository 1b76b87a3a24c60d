#!/usr/bin/env bash
# Start/stop real database servers for kvstores integration tests, as plain
# processes (no Docker, no systemd):
#
#   scripts/services.sh start [postgres|mysql|redis|redis-cluster ...]  # default: all four
#   scripts/services.sh stop  [postgres|mysql|redis|redis-cluster ...]  # default: all four
#   scripts/services.sh env
#
# `start` and `env` print `export KVSTORES_TEST_*_URL=...` lines on stdout and
# everything else on stderr, so `eval "$(scripts/services.sh start)"` works.
# All state (data, logs, pid files, env file) lives in
# ${KVSTORES_SERVICES_DIR:-/tmp/kvstores-services}. Must run as root (apt,
# useradd, runuser). Servers bind 127.0.0.1 on non-default ports so they never
# collide with system instances.
set -euo pipefail

STATE="${KVSTORES_SERVICES_DIR:-/tmp/kvstores-services}"
WAIT_SECS="${KVSTORES_SERVICES_WAIT:-60}"
# postgres refuses to run as root; use one unprivileged user for every daemon.
SVC_USER=kvstores
# Prefer the versioned binaries over whatever pg_ctl/initdb is first on PATH.
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=55432
MYSQL_PORT=53306
REDIS_PORT=56379
CLUSTER_PORTS=(57001 57002 57003)
# The cluster bus defaults to port+10000, i.e. >65535 for 57001; set it explicitly.
CLUSTER_BUS_OFFSET=-10000
ALL_SERVICES=(postgres mysql redis redis-cluster)

PG_URL="postgresql+psycopg://kvstores:kvstores@127.0.0.1:${PG_PORT}/kvstores_test"
MYSQL_URL="mysql+pymysql://kvstores:kvstores@127.0.0.1:${MYSQL_PORT}/kvstores_test"
REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"
CLUSTER_URL="redis+cluster://127.0.0.1:${CLUSTER_PORTS[0]}"

log() { printf 'services.sh: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# fail NAME LOGFILE MESSAGE: report a server failure with the tail of its log.
fail() {
    log "ERROR: $1: $3"
    if [[ -s $2 ]]; then
        log "last lines of $2:"
        tail -n 40 "$2" >&2
    fi
    log "(run '$0 stop' to clean up anything left running)"
    exit 1
}

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------- processes

# Whether something accepts TCP connections on 127.0.0.1:PORT (bash /dev/tcp,
# so no extra tools are needed).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# /proc/PID/stat without the "pid (comm) " prefix; comm may contain spaces.
proc_stat() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    printf '%s\n' "${stat##*) }"
}

# Start time (stat field 22) of PID; recorded with the pid so a recycled PID
# is never mistaken for one of ours.
proc_starttime() {
    local -a fields
    read -r -a fields <<<"$(proc_stat "$1")" || return 1
    [[ ${#fields[@]} -gt 19 ]] || return 1
    printf '%s\n' "${fields[19]}"
}

# Alive and not a zombie (an unreaped zombie still passes `kill -0`).
pid_alive() {
    local stat
    stat=$(proc_stat "$1") || return 1
    [[ ${stat:0:1} != Z ]]
}

pidfile() { printf '%s/pids/%s.pid\n' "$STATE" "$1"; }

# record_pid NAME PID: our own pid file (pid, then start time), root-owned.
record_pid() {
    local st
    st=$(proc_starttime "$2") || die "$1: process $2 exited right after start (see $STATE/logs)"
    printf '%s\n%s\n' "$2" "$st" >"$(pidfile "$1")"
}

# Prints the PID recorded for NAME if that very process is still alive.
recorded_pid() {
    local file pid st
    file=$(pidfile "$1")
    [[ -f $file ]] || return 1
    { read -r pid && read -r st; } <"$file" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ "$(proc_starttime "$pid" 2>/dev/null)" == "$st" ]] || return 1
    pid_alive "$pid" || return 1
    printf '%s\n' "$pid"
}

# running NAME PORT...: our recorded process is alive and every port answers.
running() {
    local name=$1 port
    shift
    recorded_pid "$name" >/dev/null || return 1
    for port in "$@"; do
        port_open "$port" || return 1
    done
}

# stop_recorded NAME SIGNAL: signal only the recorded PID, wait for it to go.
stop_recorded() {
    local name=$1 sig=$2 pid deadline
    if pid=$(recorded_pid "$name"); then
        log "stopping $name (pid $pid)"
        kill "-$sig" "$pid" 2>/dev/null || true
        deadline=$((SECONDS + WAIT_SECS))
        while pid_alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if pid_alive "$pid"; then
            log "$name (pid $pid) still alive after ${WAIT_SECS}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while pid_alive "$pid" && ((SECONDS < deadline)); do
                sleep 0.2
            done
            pid_alive "$pid" && die "$name (pid $pid) would not die"
        fi
    fi
    rm -f "$(pidfile "$1")"
}

# Refuse to start on a port someone else (e.g. a system instance) holds.
ensure_port_free() {
    if port_open "$1"; then
        log "port $1 is already in use by a process this script did not start:"
        ss -ltnp "sport = :$1" >&2 2>/dev/null || true
        die "$2: cannot listen on 127.0.0.1:$1"
    fi
}

# wait_for_t SECS NAME LOGFILE WATCH_PID COMMAND...: poll COMMAND until it
# succeeds; fail early if WATCH_PID (may be empty) dies, or after SECS.
wait_for_t() {
    local secs=$1 name=$2 logf=$3 watch=$4
    local deadline=$((SECONDS + secs))
    shift 4
    until "$@"; do
        if [[ -n $watch ]] && ! pid_alive "$watch"; then
            fail "$name" "$logf" "server process $watch exited during startup"
        fi
        ((SECONDS < deadline)) || fail "$name" "$logf" "not ready after ${secs}s"
        sleep 0.2
    done
}

wait_for() { wait_for_t "$WAIT_SECS" "$@"; }

# Run as the service user from / (its cwd may be unreadable to it). Closes the
# lock fd so daemons don't inherit it and hold the lock forever.
as_svc() { (cd / && runuser -u "$SVC_USER" -- "$@" 9>&-); }

# new_log NAME: fresh log file the (unprivileged) server can write.
new_log() {
    local f="$STATE/logs/$1.log"
    rm -f "$f"
    install -o "$SVC_USER" -g "$SVC_USER" -m 644 /dev/null "$f"
    printf '%s\n' "$f"
}

# fresh_dir DIR...: wipe and recreate, owned by the service user.
fresh_dir() {
    rm -rf "$1"
    install -d -o "$SVC_USER" -g "$SVC_USER" -m 700 "$@"
}

# ----------------------------------------------------------------- setup

mysqld_bin() {
    local b
    for b in mariadbd mysqld /usr/sbin/mariadbd /usr/sbin/mysqld; do
        if command -v "$b" >/dev/null 2>&1; then
            command -v "$b"
            return 0
        fi
    done
    return 1
}

mysql_client() {
    command -v mariadb 2>/dev/null || command -v mysql 2>/dev/null
}

# Install (with apt) whatever server packages the requested services lack.
ensure_packages() {
    local -a pkgs=()
    local s policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
    for s in "$@"; do
        case $s in
        postgres)
            [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/psql ]] || pkgs+=(postgresql)
            ;;
        mysql)
            { mysqld_bin && command -v mariadb-install-db && mysql_client; } >/dev/null ||
                pkgs+=(mariadb-server)
            ;;
        redis | redis-cluster)
            if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
                [[ " ${pkgs[*]} " == *" redis-server "* ]] || pkgs+=(redis-server)
            fi
            ;;
        esac
    done
    ((${#pkgs[@]} > 0)) || return 0

    log "installing ${pkgs[*]} with apt-get"
    # Package postinst scripts would otherwise start system instances on the
    # default ports; policy-rc.d exit 101 forbids that (Docker-style).
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, from kvstores scripts/services.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    {
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y \
                --no-install-recommends "${pkgs[@]}"
    } </dev/null >&2 || rc=$?
    if ((made_policy)); then
        rm -f "$policy"
    fi
    ((rc == 0)) || die "apt-get failed (exit $rc)"
}

ensure_user() {
    if ! getent passwd "$SVC_USER" >/dev/null; then
        log "creating system user $SVC_USER"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$SVC_USER"
    fi
}

ensure_state_dir() {
    install -d -o "$SVC_USER" -g "$SVC_USER" -m 755 "$STATE/logs"
    # Daemons run unprivileged, so every parent of $STATE must be traversable.
    as_svc test -w "$STATE/logs" ||
        die "user $SVC_USER cannot write $STATE/logs; choose a KVSTORES_SERVICES_DIR whose parents are world-searchable"
}

# Serialise concurrent invocations (e.g. parallel CI jobs) on the state dir.
take_lock() {
    exec 9>"$STATE/.lock"
    flock -w 600 9 || die "could not lock $STATE/.lock"
}

# ------------------------------------------------------------- postgres

pg_admin() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$STATE/postgres/run" -p "$PG_PORT" \
        -U postgres -d postgres "$@"
}

pg_user_ok() {
    PGPASSWORD=kvstores PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -tA -h 127.0.0.1 -p "$PG_PORT" \
        -U kvstores -d kvstores_test -c 'SELECT 1' >/dev/null 2>&1
}

start_postgres() {
    local dir="$STATE/postgres" logf
    if running postgres "$PG_PORT"; then
        log "postgres already running on 127.0.0.1:$PG_PORT"
        return 0
    fi
    stop_recorded postgres INT # half-dead leftovers of ours, if any
    ensure_port_free "$PG_PORT" postgres
    log "starting postgres on 127.0.0.1:$PG_PORT"
    logf=$(new_log postgres)
    fresh_dir "$dir" "$dir/data" "$dir/run"

    # Local socket: trust (admin setup); TCP: real password auth like production.
    as_svc "$PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync >>"$logf" 2>&1 ||
        fail postgres "$logf" "initdb failed"
    cat >>"$dir/data/postgresql.conf" <<EOF

# kvstores test instance: loopback only, non-default port, speed over durability
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$dir/run'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

    as_svc "$PG_BIN/pg_ctl" -D "$dir/data" -l "$logf" -w -t "$WAIT_SECS" start >&2 || {
        [[ -s $dir/data/postmaster.pid ]] && record_pid postgres "$(head -n 1 "$dir/data/postmaster.pid")"
        fail postgres "$logf" "pg_ctl start failed"
    }
    record_pid postgres "$(head -n 1 "$dir/data/postmaster.pid")"
    wait_for postgres "$logf" "" port_open "$PG_PORT"

    pg_admin -c "CREATE ROLE kvstores LOGIN CREATEDB PASSWORD 'kvstores'" \
        -c "CREATE DATABASE kvstores_test OWNER kvstores" >&2 ||
        fail postgres "$logf" "creating role/database failed"
    pg_user_ok || fail postgres "$logf" "cannot log in as kvstores over TCP"
}

# ---------------------------------------------------------------- mariadb

mysql_root() { "$(mysql_client)" --defaults-file="$STATE/mysql/my.cnf" -uroot "$@"; }

mysql_ping() { mysql_root -e 'SELECT 1' >/dev/null 2>&1 && port_open "$MYSQL_PORT"; }

mysql_user_ok() {
    MYSQL_PWD=kvstores "$(mysql_client)" --no-defaults --protocol=tcp -h 127.0.0.1 \
        -P "$MYSQL_PORT" -u kvstores kvstores_test -e 'SELECT 1' >/dev/null 2>&1
}

start_mysql() {
    local dir="$STATE/mysql" logf cnf mysqld pid
    if running mysql "$MYSQL_PORT"; then
        log "mariadb already running on 127.0.0.1:$MYSQL_PORT"
        return 0
    fi
    stop_recorded mysql TERM
    ensure_port_free "$MYSQL_PORT" mysql
    log "starting mariadb on 127.0.0.1:$MYSQL_PORT"
    mysqld=$(mysqld_bin) || die "mysql: no mariadbd/mysqld binary found"
    logf=$(new_log mysql)
    fresh_dir "$dir" "$dir/data" "$dir/run"
    cnf="$dir/my.cnf"
    # --defaults-file means no system my.cnf leaks in (ports, bind address...).
    cat >"$cnf" <<EOF
[mysqld]
user = $SVC_USER
datadir = $dir/data
socket = $dir/run/mysqld.sock
pid-file = $dir/run/mysqld.pid
port = $MYSQL_PORT
bind-address = 127.0.0.1
log-error = $logf
skip-name-resolve
# 16 MiB values need a larger packet limit and redo log than the defaults.
max_allowed_packet = 64M
innodb_log_file_size = 256M
innodb_buffer_pool_size = 256M
# Test instance: speed over durability.
innodb_flush_log_at_trx_commit = 2
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci

[client]
socket = $dir/run/mysqld.sock
port = $MYSQL_PORT
max_allowed_packet = 64M
EOF
    chmod 644 "$cnf"

    (cd / && mariadb-install-db --defaults-file="$cnf" --auth-root-authentication-method=socket \
        --skip-test-db) >>"$logf" 2>&1 9>&- || fail mysql "$logf" "mariadb-install-db failed"

    # setsid: own session, so a Ctrl-C/SIGHUP aimed at the caller spares it.
    (cd / && exec setsid "$mysqld" --defaults-file="$cnf") </dev/null >>"$logf" 2>&1 9>&- &
    pid=$!
    record_pid mysql "$pid"
    wait_for mysql "$logf" "$pid" mysql_ping

    # CREATE OR REPLACE: mariadb-install-db already made a unix_socket-only
    # superuser kvstores@localhost (named after --user); replace it.
    mysql_root >&2 <<'SQL' || fail mysql "$logf" "creating user/database failed"
CREATE DATABASE IF NOT EXISTS kvstores_test;
CREATE OR REPLACE USER 'kvstores'@'127.0.0.1' IDENTIFIED BY 'kvstores';
CREATE OR REPLACE USER 'kvstores'@'localhost' IDENTIFIED BY 'kvstores';
GRANT ALL PRIVILEGES ON kvstores_test.* TO 'kvstores'@'127.0.0.1';
GRANT ALL PRIVILEGES ON kvstores_test.* TO 'kvstores'@'localhost';
SQL
    mysql_user_ok || fail mysql "$logf" "cannot log in as kvstores over TCP"
}

# ------------------------------------------------------------------ redis

redis_ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }

# start_redis_node NAME PORT DIR [extra redis-server args...]
start_redis_node() {
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

start_redis() {
    if running redis "$REDIS_PORT"; then
        log "redis already running on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    stop_recorded redis TERM
    ensure_port_free "$REDIS_PORT" redis
    log "starting redis on 127.0.0.1:$REDIS_PORT"
    start_redis_node redis "$REDIS_PORT" "$STATE/redis"
}

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

start_redis_cluster() {
    local port createlog="$STATE/logs/redis-cluster-create.log"
    local -a addrs=()
    if cluster_running && cluster_ok; then
        log "redis cluster already running on 127.0.0.1:${CLUSTER_PORTS[*]}"
        return 0
    fi
    # Partial/broken cluster of ours: rebuild from scratch.
    for port in "${CLUSTER_PORTS[@]}"; do
        stop_recorded "redis-cluster-$port" TERM
    done
    for port in "${CLUSTER_PORTS[@]}"; do
        ensure_port_free "$port" redis-cluster
        ensure_port_free "$((port + CLUSTER_BUS_OFFSET))" redis-cluster
    done
    log "starting redis cluster on 127.0.0.1:${CLUSTER_PORTS[*]}"
    rm -rf "$STATE/redis-cluster"
    install -d -m 755 "$STATE/redis-cluster"
    for port in "${CLUSTER_PORTS[@]}"; do
        start_redis_node "redis-cluster-$port" "$port" "$STATE/redis-cluster/$port" \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --cluster-port "$((port + CLUSTER_BUS_OFFSET))"
        addrs+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
        </dev/null >"$createlog" 2>&1 || fail redis-cluster "$createlog" "redis-cli --cluster create failed"
    wait_for redis-cluster "$createlog" "" cluster_ok
}

# ------------------------------------------------------------------- env

# Env file lists every service of ours that is currently alive.
write_env() {
    local out="" port all=1
    if recorded_pid postgres >/dev/null; then
        out+="export KVSTORES_TEST_POSTGRES_URL='$PG_URL'"$'\n'
    fi
    if recorded_pid mysql >/dev/null; then
        out+="export KVSTORES_TEST_MYSQL_URL='$MYSQL_URL'"$'\n'
    fi
    if recorded_pid redis >/dev/null; then
        out+="export KVSTORES_TEST_REDIS_URL='$REDIS_URL'"$'\n'
    fi
    for port in "${CLUSTER_PORTS[@]}"; do
        recorded_pid "redis-cluster-$port" >/dev/null || all=0
    done
    if ((all)); then
        out+="export KVSTORES_TEST_REDIS_CLUSTER_URL='$CLUSTER_URL'"$'\n'
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
        case $s in
        postgres | mysql | redis | redis-cluster) SERVICES+=("$s") ;;
        *) die "unknown service '$s' (expected: ${ALL_SERVICES[*]})" ;;
        esac
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
    for s in "${SERVICES[@]}"; do
        case $s in
        postgres) start_postgres ;;
        mysql) start_mysql ;;
        redis) start_redis ;;
        redis-cluster) start_redis_cluster ;;
        esac
    done
    write_env
    cat "$STATE/env"
}

cmd_stop() {
    local s port
    parse_services "$@"
    [[ -d $STATE/pids ]] || {
        log "nothing to stop ($STATE/pids does not exist)"
        return 0
    }
    take_lock
    for s in "${SERVICES[@]}"; do
        case $s in
        postgres) stop_recorded postgres INT ;; # SIGINT = fast shutdown; TERM waits for clients
        mysql) stop_recorded mysql TERM ;;
        redis) stop_recorded redis TERM ;;
        redis-cluster)
            for port in "${CLUSTER_PORTS[@]}"; do
                stop_recorded "redis-cluster-$port" TERM
            done
            ;;
        esac
        # Next start is from scratch anyway; logs are kept for post-mortems.
        rm -rf "${STATE:?}/$s"
    done
    write_env
}

cmd_env() {
    [[ -s $STATE/env ]] || die "no services running ($STATE/env missing); run: $0 start"
    cat "$STATE/env"
}

main() {
    (($# > 0)) || usage
    local cmd=$1
    shift
    # Absolute, since it ends up in server configs; never "/" (we rm -rf below it).
    STATE=$(realpath -m -- "$STATE")
    [[ $STATE != / ]] || die "refusing to use / as KVSTORES_SERVICES_DIR"
    # Unix socket paths are limited to 107 bytes; postgres' is the longest.
    local sock="$STATE/postgres/run/.s.PGSQL.$PG_PORT"
    ((${#sock} <= 107)) || die "KVSTORES_SERVICES_DIR too long: socket path $sock exceeds 107 bytes"
    case $cmd in
    start | stop)
        ((EUID == 0)) || die "must run as root (installs packages, switches users)"
        "cmd_$cmd" "$@"
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
