# shellcheck shell=bash
# Helpers shared by scripts/services.sh and every scripts/services/<name>.sh:
# logging, failures, pid/start-time bookkeeping, port checks, waiting, the
# service user, the state dir and package installation. Sourced by the driver,
# never run on its own. Expects STATE, WAIT_SECS, DURABLE and TLS (0 or 1) to
# be set by the driver; tls.sh (TLS files) is sourced next to it.

# postgres refuses to run as root; use one unprivileged user for every daemon.
SVC_USER=kvstores

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

# port_setting VAR VALUE: VALUE (from environment variable VAR) must be a TCP
# port number; used by the services' <name>_check functions.
port_setting() {
    if ! [[ $2 =~ ^[1-9][0-9]{0,4}$ ]] || (($2 > 65535)); then
        die "$1: '$2' is not a TCP port number (1-65535)"
    fi
}

# flag_setting VAR VALUE: VALUE (from environment variable VAR) must be 0 or 1.
flag_setting() {
    [[ $2 == [01] ]] || die "$1: '$2' is neither 0 nor 1"
}

# The durability lines of a postgresql.conf: durable with DURABLE=1, else
# speed over durability (a test instance's data is thrown away).
pg_durability_conf() {
    local v=off
    ((DURABLE)) && v=on
    printf '%s\n' "fsync = $v" "synchronous_commit = $v" "full_page_writes = $v"
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
    rm -f "$(downfile "$1")"
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
    rm -f "$(pidfile "$1")" "$(downfile "$1")"
}

# ------------------------------------------------ stop-node and start-node

# A process that stop-node stopped on purpose (data kept, env line still
# printed) has a NAME.down marker next to its pid file. Recording a new pid
# removes it, and so does stop_recorded: stop-node marks after stopping.
downfile() { printf '%s/pids/%s.down\n' "$STATE" "$1"; }
mark_down() { : >"$(downfile "$1")"; }
is_down() { [[ -f $(downfile "$1") ]]; }

# Ours is alive, or stopped by stop-node: what <fn>_env prints a URL for.
up_or_down() { recorded_pid "$1" >/dev/null || is_down "$1"; }

# single_node SERVICE N: a single-node service's only node is 1.
single_node() {
    [[ $2 == 1 ]] || die "$1 is a single-node service: the node must be 1, got '$2'"
}

# node_running NAME: for <fn>_stop_node: whether our NAME runs (else says so).
node_running() {
    recorded_pid "$1" >/dev/null && return 0
    if is_down "$1"; then
        log "$1 is already stopped (stop-node)"
    else
        log "$1 is not running"
        rm -f "$(pidfile "$1")"
    fi
    return 1
}

# node_stopped NAME SERVICE KEPT: for <fn>_start_node: fails (saying so) if our
# NAME runs already; dies if KEPT (a file of its kept data or config) is gone.
node_stopped() {
    if recorded_pid "$1" >/dev/null; then
        log "$1 is already running; nothing to do"
        return 1
    fi
    [[ -e $3 ]] || die "$1: nothing kept to restart ($3 is missing); start it first: $0 start $2"
}

# rotate_log NAME: keep the previous run's log as NAME.log.1 (a restart on
# kept data then gets a fresh NAME.log from new_log).
rotate_log() {
    local f="$STATE/logs/$1.log"
    [[ ! -f $f ]] || mv -f "$f" "$f.1"
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

# apt_install PACKAGE...: install server packages with apt-get, without letting
# their postinst scripts start system instances.
apt_install() {
    local policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
    log "installing $* with apt-get"
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
                --no-install-recommends "$@"
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
