# shellcheck shell=bash
# FerretDB 1.24.2 (a MongoDB-wire-compatible server) for scripts/services.sh
# (sourced; helpers from lib.sh). No real mongod can be installed here (it is
# not in Debian), so this is the MongoDB the integration tests get.
#
# FerretDB runs with its PostgreSQL handler in front of a PostgreSQL 15 cluster
# of its own (own data dir under $STATE/ferretdb, own port), both as the service
# user. Stock 1.24.2 has two concurrency bugs a key-value store's tests hit at
# once (a pool deadlock in update/findAndModify, and E11000 on concurrent
# upserts of one new _id), and `go install` gives a binary that panics (no
# generated build/version/version.txt), so it is built here from the module
# source with ferretdb/*.patch applied; see ferretdb_build. The binary is
# cached in ${XDG_CACHE_HOME:-~/.cache}/kvstores-services, keyed by the patches,
# so only the first start on a machine builds (about 1 minute; needs Go >= 1.21
# and the Go module proxy).

FERRETDB_VERSION=1.24.2
# Bump when the build recipe below changes, so cached binaries are rebuilt.
FERRETDB_RECIPE=1
FERRETDB_PORT="${KVSTORES_MONGODB_PORT:-57017}"
FERRETDB_PG_PORT="${KVSTORES_FERRETDB_POSTGRES_PORT:-55433}"
# TLS listener (KVSTORES_SERVICES_TLS=1), besides the plain port.
FERRETDB_TLS_PORT="${KVSTORES_MONGODB_TLS_PORT:-57018}"
FERRETDB_PG_BIN=/usr/lib/postgresql/15/bin
FERRETDB_PATCHES="$(dirname -- "$(realpath -- "${BASH_SOURCE[0]}")")/ferretdb"
# No credentials: FerretDB then connects to PostgreSQL with the ones of its
# --postgresql-url (a client that authenticates has its own passed through).
MONGODB_URL="mongodb://127.0.0.1:${FERRETDB_PORT}/kvstores_test"

ferretdb_check() {
    port_setting KVSTORES_MONGODB_PORT "$FERRETDB_PORT"
    port_setting KVSTORES_FERRETDB_POSTGRES_PORT "$FERRETDB_PG_PORT"
    port_setting KVSTORES_MONGODB_TLS_PORT "$FERRETDB_TLS_PORT"
    ((FERRETDB_PORT != FERRETDB_PG_PORT && FERRETDB_PORT != FERRETDB_TLS_PORT &&
        FERRETDB_TLS_PORT != FERRETDB_PG_PORT)) ||
        die "KVSTORES_MONGODB_PORT, KVSTORES_MONGODB_TLS_PORT and KVSTORES_FERRETDB_POSTGRES_PORT must differ"
    local sock="$STATE/ferretdb/run/.s.PGSQL.$FERRETDB_PG_PORT"
    ((${#sock} <= 107)) || die "KVSTORES_SERVICES_DIR too long: socket path $sock exceeds 107 bytes"
}

# Go is not an apt package here: Debian 12's golang-go (1.19) is too old for
# FerretDB's go.mod, so ferretdb_build checks for a usable `go` itself.
ferretdb_packages() {
    [[ -x $FERRETDB_PG_BIN/initdb && -x $FERRETDB_PG_BIN/pg_ctl && -x $FERRETDB_PG_BIN/psql ]] ||
        echo postgresql
    command -v patch >/dev/null || echo patch
}

ferretdb_cache_dir() { printf '%s\n' "${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/kvstores-services"; }

# Path of the cached binary for this version, recipe and these patches.
ferretdb_binary_path() {
    local key
    key=$({
        printf 'ferretdb %s recipe %s\n' "$FERRETDB_VERSION" "$FERRETDB_RECIPE"
        cat "$FERRETDB_PATCHES"/*.patch
    } | sha256sum)
    printf '%s/ferretdb-%s-%s\n' "$(ferretdb_cache_dir)" "$FERRETDB_VERSION" "${key:0:12}"
}

# Runs and says it is our version (a build without version.txt panics here).
ferretdb_binary_ok() {
    local out
    [[ -x $1 ]] && out=$("$1" --version 2>/dev/null) &&
        [[ $'\n'$out$'\n' == *$'\n'"version: v$FERRETDB_VERSION"$'\n'* ]]
}

# ferretdb_build: print the path of a patched FerretDB binary, building it
# first unless cached. Only the path goes to stdout; the build's output goes to
# $STATE/logs/ferretdb-build.log.
ferretdb_build() {
    local bin cache buildlog
    bin=$(ferretdb_binary_path)
    if ferretdb_binary_ok "$bin"; then
        printf '%s\n' "$bin"
        return 0
    fi
    cache=$(ferretdb_cache_dir)
    buildlog="$STATE/logs/ferretdb-build.log"
    install -d -m 755 "$cache" || die "ferretdb: cannot create $cache"
    command -v go >/dev/null ||
        die "ferretdb: building FerretDB needs Go >= 1.21 on PATH (with access to the Go module proxy)"
    log "building FerretDB $FERRETDB_VERSION with $FERRETDB_PATCHES/*.patch (about a minute; log: $buildlog)"
    # Subshell: its own lock (builds from several state dirs share the cache),
    # EXIT trap and cwd. Every step checks its status itself: `set -e` does
    # not apply inside a subshell whose status is tested with `||`.
    (
        exec 8>"$cache/.ferretdb-build.lock" 9>&- </dev/null
        flock -w 1800 8 || die "ferretdb: could not lock $cache/.ferretdb-build.lock"
        if ferretdb_binary_ok "$bin"; then
            exit 0 # another invocation built it while we waited
        fi
        work=$(mktemp -d "$cache/ferretdb-build.XXXXXX") || exit 1
        trap 'rm -rf "$work"' EXIT
        exec >"$buildlog" 2>&1
        cd "$work" || exit 1
        go version || exit 1
        # The module's source (the proxy's zip, unpacked read-only in the module
        # cache); `go mod download -json` names its directory.
        moddir=$(go mod download -json "github.com/FerretDB/FerretDB@v$FERRETDB_VERSION" |
            sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
        [[ -n $moddir && -d $moddir ]] || {
            echo "go mod download named no source directory"
            exit 1
        }
        cp -R "$moddir/." src && chmod -R u+w src && cd src || exit 1
        # Generated by FerretDB's own build (`task gen-version`) and absent from
        # the module: without version.txt the binary panics at start.
        printf 'v%s\n' "$FERRETDB_VERSION" >build/version/version.txt || exit 1
        printf 'kvstores-patched\n' >build/version/package.txt || exit 1
        # A fresh copy each build, so each patch applies exactly once; --forward
        # makes an already applied patch fail instead of being reversed.
        for p in "$FERRETDB_PATCHES"/*.patch; do
            echo "applying $p"
            patch -p1 --forward --batch <"$p" || exit 1
        done
        # -buildvcs=false: the copy is no repository (and may sit inside one).
        go build -buildvcs=false -trimpath -ldflags='-s -w' -o "$work/ferretdb" ./cmd/ferretdb ||
            exit 1
        "$work/ferretdb" --version || exit 1
        ferretdb_binary_ok "$work/ferretdb" || exit 1
        mv -f "$work/ferretdb" "$bin" || exit 1
    ) || fail ferretdb-build "$buildlog" "building FerretDB failed"
    log "built $bin"
    printf '%s\n' "$bin"
}

ferretdb_pg_admin() {
    "$FERRETDB_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$STATE/ferretdb/run" \
        -p "$FERRETDB_PG_PORT" -U postgres -d postgres "$@"
}

ferretdb_start() {
    local dir="$STATE/ferretdb" logf pglogf bin
    if running ferretdb-postgres "$FERRETDB_PG_PORT" && running ferretdb "$FERRETDB_PORT"; then
        log "ferretdb already running on 127.0.0.1:$FERRETDB_PORT (its postgres on $FERRETDB_PG_PORT)"
        return 0
    fi
    ferretdb_stop # half-dead leftovers of ours, if any
    ensure_port_free "$FERRETDB_PORT" ferretdb
    ensure_port_free "$FERRETDB_PG_PORT" ferretdb-postgres
    if ((TLS)); then
        ensure_port_free "$FERRETDB_TLS_PORT" ferretdb
    fi
    bin=$(ferretdb_build)
    log "starting ferretdb on 127.0.0.1:$FERRETDB_PORT (its postgres on 127.0.0.1:$FERRETDB_PG_PORT)"
    fresh_dir "$dir" "$dir/data" "$dir/run" "$dir/state"
    # The cache may sit under root's private home: give the service user a copy.
    install -m 755 "$bin" "$dir/ferretdb"

    pglogf=$(new_log ferretdb-postgres)
    as_svc "$FERRETDB_PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync >>"$pglogf" 2>&1 ||
        fail ferretdb-postgres "$pglogf" "initdb failed"
    {
        cat <<CONF

# kvstores FerretDB backend: loopback only, non-default port; speed over
# durability unless KVSTORES_SERVICES_DURABLE=1
listen_addresses = '127.0.0.1'
port = $FERRETDB_PG_PORT
unix_socket_directories = '$dir/run'
# FerretDB pools up to 50 connections per PostgreSQL user.
max_connections = 120
CONF
        pg_durability_conf
    } >>"$dir/data/postgresql.conf"
    as_svc "$FERRETDB_PG_BIN/pg_ctl" -D "$dir/data" -l "$pglogf" -w -t "$WAIT_SECS" start >&2 || {
        [[ -s $dir/data/postmaster.pid ]] && record_pid ferretdb-postgres "$(head -n 1 "$dir/data/postmaster.pid")"
        fail ferretdb-postgres "$pglogf" "pg_ctl start failed"
    }
    record_pid ferretdb-postgres "$(head -n 1 "$dir/data/postmaster.pid")"
    wait_for ferretdb-postgres "$pglogf" "" port_open "$FERRETDB_PG_PORT"
    ferretdb_pg_admin -c "CREATE ROLE kvstores LOGIN PASSWORD 'kvstores'" \
        -c "CREATE DATABASE ferretdb OWNER kvstores" >&2 ||
        fail ferretdb-postgres "$pglogf" "creating role/database failed"

    # --debug-addr=-: no metrics/pprof listener (its default 127.0.0.1:8088
    # would collide between two sets of services). Kept for start-node.
    printf '%s\n' --handler=postgresql \
        "--postgresql-url=postgres://kvstores:kvstores@127.0.0.1:$FERRETDB_PG_PORT/ferretdb" \
        "--listen-addr=127.0.0.1:$FERRETDB_PORT" "--state-dir=$dir/state" \
        --telemetry=disable --debug-addr=- --log-level=warn >"$dir/ferretdb.args"
    if ((TLS)); then
        # No --listen-tls-ca-file: with one FerretDB requires client certificates.
        printf '%s\n' "--listen-tls=127.0.0.1:$FERRETDB_TLS_PORT" \
            "--listen-tls-cert-file=$(tls_file server.pem)" \
            "--listen-tls-key-file=$(tls_file server.key)" >>"$dir/ferretdb.args"
    fi
    logf=$(new_log ferretdb)
    ferretdb_launch "$logf"
}

# ferretdb_launch LOGFILE: start FerretDB ($STATE/ferretdb/ferretdb with the
# arguments of ferretdb.args, one a line), record its pid, wait until it listens.
ferretdb_launch() {
    local dir="$STATE/ferretdb" logf=$1 pid tls_port
    local -a args
    mapfile -t args <"$dir/ferretdb.args"
    # setpriv execs FerretDB itself as the service user (no parent left
    # behind), so $! is FerretDB's pid; setsid: spared by a Ctrl-C of the caller.
    (cd / && exec setsid setpriv --reuid="$SVC_USER" --regid="$SVC_USER" --init-groups -- \
        "$dir/ferretdb" "${args[@]}") </dev/null >>"$logf" 2>&1 9>&- &
    pid=$!
    record_pid ferretdb "$pid"
    wait_for ferretdb "$logf" "$pid" port_open "$FERRETDB_PORT"
    tls_port=$(ferretdb_tls_port)
    if [[ -n $tls_port ]]; then
        wait_for ferretdb "$logf" "$pid" port_open "$tls_port"
        tls_handshake_ok 127.0.0.1 "$tls_port" ||
            fail ferretdb "$logf" "no TLS handshake on 127.0.0.1:$tls_port"
    fi
}

# Its TLS port, if it was started with TLS (its kept arguments say).
ferretdb_tls_port() {
    sed -n 's/^--listen-tls=127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$STATE/ferretdb/ferretdb.args" 2>/dev/null || true
}

ferretdb_stop() {
    stop_recorded ferretdb TERM
    # SIGINT = fast shutdown; TERM waits for clients.
    stop_recorded ferretdb-postgres INT
}

# stop_node 1: stop the FerretDB process only; its PostgreSQL (which holds the
# data) keeps running.
ferretdb_stop_node() {
    single_node ferretdb "$1"
    node_running ferretdb || return 0
    stop_recorded ferretdb TERM
    mark_down ferretdb
    log "ferretdb stopped; its PostgreSQL (the data) still runs on 127.0.0.1:$FERRETDB_PG_PORT"
}

# start_node 1: start FerretDB again, with the arguments of the last start,
# over its still running PostgreSQL.
ferretdb_start_node() {
    local logf tls_port
    single_node ferretdb "$1"
    node_stopped ferretdb ferretdb "$STATE/ferretdb/ferretdb.args" || return 0
    recorded_pid ferretdb-postgres >/dev/null ||
        die "ferretdb: its PostgreSQL is not running (stop-node leaves it running); run: $0 start ferretdb"
    ensure_port_free "$FERRETDB_PORT" ferretdb
    tls_port=$(ferretdb_tls_port)
    [[ -z $tls_port ]] || ensure_port_free "$tls_port" ferretdb
    log "starting ferretdb on 127.0.0.1:$FERRETDB_PORT (over its postgres on 127.0.0.1:$FERRETDB_PG_PORT)"
    rotate_log ferretdb
    logf=$(new_log ferretdb)
    ferretdb_launch "$logf"
}

# Only a complete pair of ours counts (FerretDB stopped by stop-node included).
ferretdb_env() {
    local tls_port
    if up_or_down ferretdb && recorded_pid ferretdb-postgres >/dev/null; then
        printf "export KVSTORES_TEST_MONGODB_URL='%s'\n" "$MONGODB_URL"
        tls_port=$(ferretdb_tls_port)
        if [[ -n $tls_port ]]; then
            printf "export KVSTORES_TEST_MONGODB_TLS_URL='mongodb://127.0.0.1:%s/kvstores_test?tls=true&tlsCAFile=%s'\n" \
                "$tls_port" "$(tls_file ca.pem)"
        fi
    fi
}
