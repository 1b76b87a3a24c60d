# shellcheck shell=bash
# A Data API (Astra DB's JSON-over-HTTP API) for scripts/services.sh (sourced;
# helpers from lib.sh): the AstraDB tests' server.
#
# The Data API server (the open-source Stargate Data API) is in no registry, so
# this runs dataapi/emulator.py, an emulator of it that keeps the documents in
# the `cassandra` service's node (started first if it is not running) and
# reproduces what the real server does over Cassandra 5.0
# (../../../shared/SERVERS.md). The emulator needs only cassandra-driver, at the
# version constraints.txt pins, installed once into a venv cached in
# ${XDG_CACHE_HOME:-~/.cache}/kvstores-services (keyed by that version, the
# Python and the recipe below); each start copies the venv and the emulator into
# $STATE/dataapi for the service user, who cannot read root's home.

# Bump when the venv recipe below changes, so cached venvs are rebuilt.
DATAAPI_RECIPE=1
DATAAPI_PORT="${KVSTORES_DATAAPI_PORT:-58181}"
DATAAPI_TOKEN=kvstores-test-token
# The emulator keeps a Data API keyspace as the Cassandra keyspace of that name, on the node
# the Cassandra tests use too: a keyspace of its own, so that the AstraDB stores'
# collections (tables there) never meet the Cassandra stores' tables.
DATAAPI_KEYSPACE=kvstores_dataapi
DATAAPI_SRC="$(dirname -- "$(realpath -- "${BASH_SOURCE[0]}")")/dataapi"
DATAAPI_CONSTRAINTS="$(realpath -m -- "$DATAAPI_SRC/../../../constraints.txt")"
DATAAPI_URL="astradb+http://127.0.0.1:${DATAAPI_PORT}/${DATAAPI_KEYSPACE}?token=${DATAAPI_TOKEN}"

dataapi_check() {
    port_setting KVSTORES_DATAAPI_PORT "$DATAAPI_PORT"
    local p
    for p in "$CASSANDRA_PORT" "$CASSANDRA_STORAGE_PORT" "$CASSANDRA_JMX_PORT"; do
        ((DATAAPI_PORT != p)) ||
            die "KVSTORES_DATAAPI_PORT ($DATAAPI_PORT) must differ from the cassandra service's ports"
    done
}

# A Python >= 3.11 with venv whose interpreter the service user may run (a
# pyenv shim resolves under root's private home): Debian's first.
dataapi_python() {
    local py real
    for py in /usr/bin/python3.11 "$(command -v python3.11 || true)" /usr/bin/python3 \
        "$(command -v python3 || true)"; do
        [[ -n $py && -x $py ]] || continue
        real=$("$py" -c 'import sys; print(sys.executable)' 2>/dev/null) || continue
        "$real" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
            2>/dev/null || continue
        if getent passwd "$SVC_USER" >/dev/null; then
            as_svc "$real" -c '' 2>/dev/null || continue
        fi
        printf '%s\n' "$real"
        return 0
    done
    return 1
}

dataapi_packages() {
    dataapi_python >/dev/null || echo python3-venv
    cassandra_packages
}

dataapi_driver_pin() {
    grep -E '^cassandra-driver==' "$DATAAPI_CONSTRAINTS" ||
        die "dataapi: $DATAAPI_CONSTRAINTS pins no cassandra-driver"
}

# Path of the cached venv for this recipe, Python and cassandra-driver pin.
dataapi_venv_path() {
    local key
    key=$({
        printf 'dataapi recipe %s\n' "$DATAAPI_RECIPE"
        "$1" -VV
        printf '%s\n' "$1"
        dataapi_driver_pin
    } | sha256sum)
    printf '%s/dataapi-venv-%s\n' "$(cassandra_cache_dir)" "${key:0:12}"
}

dataapi_venv_ok() { [[ -x $1/bin/python ]] && "$1/bin/python" -c 'import cassandra.cluster' 2>/dev/null; }

# dataapi_venv: print the path of a venv with cassandra-driver, creating it
# first unless cached. Only the path goes to stdout; pip's output goes to
# $STATE/logs/dataapi-venv.log.
dataapi_venv() {
    local py venv cache venvlog
    py=$(dataapi_python) ||
        die "dataapi: needs a Python >= 3.11 with venv that user $SVC_USER can run (Debian: apt install python3-venv)"
    venv=$(dataapi_venv_path "$py")
    if dataapi_venv_ok "$venv"; then
        printf '%s\n' "$venv"
        return 0
    fi
    cache=$(cassandra_cache_dir)
    venvlog="$STATE/logs/dataapi-venv.log"
    install -d -m 755 "$cache" || die "dataapi: cannot create $cache"
    log "creating the Data API emulator's venv ($(dataapi_driver_pin); log: $venvlog)"
    # Subshell: its own lock (starts from several state dirs share the cache),
    # EXIT trap and status checks (no `set -e` in here).
    (
        exec 8>"$cache/.dataapi-venv.lock" 9>&- </dev/null
        flock -w 1800 8 || die "dataapi: could not lock $cache/.dataapi-venv.lock"
        if dataapi_venv_ok "$venv"; then
            exit 0 # another invocation made it while we waited
        fi
        work=$(mktemp -d "$cache/dataapi-venv.XXXXXX") || exit 1
        trap 'rm -rf "$work"' EXIT
        exec >"$venvlog" 2>&1
        # A venv moved after creation still runs `bin/python` (only pip's own
        # launcher scripts keep the old path, and they are not used).
        "$py" -m venv "$work/venv" || exit 1
        "$work/venv/bin/python" -m pip install --disable-pip-version-check --no-input \
            -c "$DATAAPI_CONSTRAINTS" cassandra-driver || exit 1
        dataapi_venv_ok "$work/venv" || exit 1
        chmod -R a+rX "$work/venv" || exit 1
        rm -rf "$venv" && mv "$work/venv" "$venv" || exit 1
    ) || fail dataapi-venv "$venvlog" "creating the venv failed"
    log "created $venv"
    printf '%s\n' "$venv"
}

# dataapi_post COMMAND_JSON [PATH]: the emulator's HTTP reply to one command
# (bash /dev/tcp, so no curl is needed).
dataapi_post() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 10 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nToken: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" \
            "$4" "$2" "${#3}" "$3" >&3
        cat <&3' _ "$DATAAPI_PORT" "$DATAAPI_TOKEN" "$1" "${2:-/api/json/v1}" 2>/dev/null
}

dataapi_ready() {
    local reply
    recorded_pid dataapi >/dev/null || return 1
    reply=$(dataapi_post '{"findKeyspaces":{}}') || return 1
    [[ $reply == "HTTP/1.1 200"* && $reply == *'"keyspaces"'* ]]
}

# Launch only; dataapi_wait waits until it answers.
dataapi_start() {
    local dir="$STATE/dataapi" venv logf
    if dataapi_ready; then
        log "dataapi already running on 127.0.0.1:$DATAAPI_PORT"
        return 0
    fi
    dataapi_stop # half-dead leftovers of ours, if any
    ensure_port_free "$DATAAPI_PORT" dataapi
    # Its documents live in the cassandra service: launched already (by this
    # same start) it only needs waiting for, else it is started here.
    if ! recorded_pid cassandra >/dev/null; then
        cassandra_start
    fi
    venv=$(dataapi_venv)
    cassandra_wait
    log "starting dataapi (the Data API emulator) on 127.0.0.1:$DATAAPI_PORT over cassandra 127.0.0.1:$CASSANDRA_PORT"
    rm -rf "$dir"
    install -d -m 755 "$dir"
    # The cache may sit under root's private home: give the service user a copy.
    cp -a "$venv" "$dir/venv"
    install -m 644 "$DATAAPI_SRC/emulator.py" "$dir/emulator.py"
    logf=$(new_log dataapi)
    dataapi_launch "$logf"
}

# dataapi_launch LOGFILE: start the emulator of $STATE/dataapi in the
# background and record its pid; dataapi_wait says when it serves.
dataapi_launch() {
    local dir="$STATE/dataapi" logf=$1 pid
    # setpriv execs Python itself as the service user, so $! is the emulator's
    # pid; setsid: spared by a Ctrl-C of the caller. -I: no user site, no
    # PYTHON* variables, no cwd on sys.path.
    (cd / && exec setsid setpriv --reuid="$SVC_USER" --regid="$SVC_USER" --init-groups -- \
        "$dir/venv/bin/python" -I "$dir/emulator.py" --port "$DATAAPI_PORT" \
        --cassandra "127.0.0.1:$CASSANDRA_PORT" --token "$DATAAPI_TOKEN") \
        </dev/null >>"$logf" 2>&1 9>&- &
    pid=$!
    record_pid dataapi "$pid"
}

dataapi_wait() {
    local pid reply
    pid=$(recorded_pid dataapi) ||
        fail dataapi "$STATE/logs/dataapi.log" "server process exited during startup"
    wait_for dataapi "$STATE/logs/dataapi.log" "$pid" dataapi_ready
    # As on Astra (default_keyspace), the URL's keyspace exists before any client comes.
    reply=$(dataapi_post "{\"createKeyspace\":{\"name\":\"$DATAAPI_KEYSPACE\"}}") || reply=""
    [[ $reply == *'"ok":1'* ]] ||
        fail dataapi "$STATE/logs/dataapi.log" "createKeyspace $DATAAPI_KEYSPACE failed: ${reply##*$'\r\n'}"
    log "dataapi serves the Data API on http://127.0.0.1:$DATAAPI_PORT (keyspace $DATAAPI_KEYSPACE)"
}

dataapi_stop() {
    stop_recorded dataapi TERM
}

# stop_node 1: stop the emulator only; the documents stay in the cassandra
# service, which keeps running.
dataapi_stop_node() {
    single_node dataapi "$1"
    node_running dataapi || return 0
    dataapi_stop
    mark_down dataapi
    log "dataapi stopped; its documents stay in cassandra (127.0.0.1:$CASSANDRA_PORT)"
}

# start_node 1: start the emulator again (the copy in $STATE/dataapi) over the
# running cassandra service, and wait until it serves.
dataapi_start_node() {
    local logf
    single_node dataapi "$1"
    node_stopped dataapi dataapi "$STATE/dataapi/emulator.py" || return 0
    cassandra_ready ||
        die "dataapi: its cassandra is not serving on 127.0.0.1:$CASSANDRA_PORT; start it first ($0 start-node cassandra 1, or $0 start dataapi)"
    ensure_port_free "$DATAAPI_PORT" dataapi
    log "starting dataapi (the Data API emulator) on 127.0.0.1:$DATAAPI_PORT over cassandra 127.0.0.1:$CASSANDRA_PORT"
    rotate_log dataapi
    logf=$(new_log dataapi)
    dataapi_launch "$logf"
    dataapi_wait
}

# Only with its Cassandra: without it every command fails. Either one stopped
# by stop-node still counts (a test's outage on purpose).
dataapi_env() {
    if up_or_down dataapi && up_or_down cassandra; then
        printf "export KVSTORES_TEST_ASTRADB_URL='%s'\n" "$DATAAPI_URL"
    fi
}
