# shellcheck shell=bash
# PostgreSQL 15 for scripts/services.sh (sourced; helpers from lib.sh).

# Prefer the versioned binaries over whatever pg_ctl/initdb is first on PATH.
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT="${KVSTORES_POSTGRES_PORT:-55432}"
PG_URL="postgresql+psycopg://kvstores:kvstores@127.0.0.1:${PG_PORT}/kvstores_test"

postgres_check() {
    port_setting KVSTORES_POSTGRES_PORT "$PG_PORT"
    # Unix socket paths are limited to 107 bytes; postgres' is the longest.
    local sock="$STATE/postgres/run/.s.PGSQL.$PG_PORT"
    ((${#sock} <= 107)) || die "KVSTORES_SERVICES_DIR too long: socket path $sock exceeds 107 bytes"
}

postgres_packages() {
    [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/psql ]] || echo postgresql
}

pg_admin() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$STATE/postgres/run" -p "$PG_PORT" \
        -U postgres -d postgres "$@"
}

pg_user_ok() {
    PGPASSWORD=kvstores PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -tA -h 127.0.0.1 -p "$PG_PORT" \
        -U kvstores -d kvstores_test -c 'SELECT 1' >/dev/null 2>&1
}

# postgres_launch LOGFILE: start the cluster in $STATE/postgres/data, record
# its pid and wait until it listens.
postgres_launch() {
    local dir="$STATE/postgres" logf=$1
    as_svc "$PG_BIN/pg_ctl" -D "$dir/data" -l "$logf" -w -t "$WAIT_SECS" start >&2 || {
        [[ -s $dir/data/postmaster.pid ]] && record_pid postgres "$(head -n 1 "$dir/data/postmaster.pid")"
        fail postgres "$logf" "pg_ctl start failed"
    }
    record_pid postgres "$(head -n 1 "$dir/data/postmaster.pid")"
    wait_for postgres "$logf" "" port_open "$PG_PORT"
}

# Whether ours was started with TLS (its postgresql.conf says).
pg_tls() { grep -q "^ssl = on$" "$STATE/postgres/data/postgresql.conf" 2>/dev/null; }

postgres_start() {
    local dir="$STATE/postgres" logf
    if running postgres "$PG_PORT"; then
        log "postgres already running on 127.0.0.1:$PG_PORT"
        return 0
    fi
    postgres_stop # half-dead leftovers of ours, if any
    ensure_port_free "$PG_PORT" postgres
    log "starting postgres on 127.0.0.1:$PG_PORT"
    logf=$(new_log postgres)
    fresh_dir "$dir" "$dir/data" "$dir/run"

    # Local socket: trust (admin setup); TCP: real password auth like production.
    as_svc "$PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync >>"$logf" 2>&1 ||
        fail postgres "$logf" "initdb failed"
    {
        cat <<CONF

# kvstores test instance: loopback only, non-default port; speed over
# durability unless KVSTORES_SERVICES_DURABLE=1
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$dir/run'
max_connections = 200
CONF
        pg_durability_conf
        if ((TLS)); then
            # tls.sh's certificate on the same port; plain connections still work.
            printf '%s\n' "ssl = on" "ssl_cert_file = '$(tls_file server.pem)'" \
                "ssl_key_file = '$(tls_file server.key)'"
        fi
    } >>"$dir/data/postgresql.conf"

    postgres_launch "$logf"

    pg_admin -c "CREATE ROLE kvstores LOGIN CREATEDB PASSWORD 'kvstores'" \
        -c "CREATE DATABASE kvstores_test OWNER kvstores" >&2 ||
        fail postgres "$logf" "creating role/database failed"
    pg_user_ok || fail postgres "$logf" "cannot log in as kvstores over TCP"
    if pg_tls; then
        PGSSLMODE=verify-full PGSSLROOTCERT=$(tls_file ca.pem) pg_user_ok ||
            fail postgres "$logf" "cannot log in as kvstores over TLS (sslmode=verify-full)"
    fi
}

# SIGINT = fast shutdown; TERM waits for clients.
postgres_stop() { stop_recorded postgres INT; }

# stop_node 1: stop the server (fast shutdown), keeping its data directory.
postgres_stop_node() {
    single_node postgres "$1"
    node_running postgres || return 0
    postgres_stop
    mark_down postgres
    log "postgres stopped; its data is kept in $STATE/postgres/data"
}

# start_node 1: start it again on its kept data directory and configuration.
postgres_start_node() {
    local logf
    single_node postgres "$1"
    node_stopped postgres postgres "$STATE/postgres/data/PG_VERSION" || return 0
    ensure_port_free "$PG_PORT" postgres
    log "starting postgres on 127.0.0.1:$PG_PORT (kept data in $STATE/postgres/data)"
    rotate_log postgres
    logf=$(new_log postgres)
    postgres_launch "$logf"
    pg_user_ok || fail postgres "$logf" "cannot log in as kvstores over TCP"
    if pg_tls; then
        PGSSLMODE=verify-full PGSSLROOTCERT=$(tls_file ca.pem) pg_user_ok ||
            fail postgres "$logf" "cannot log in as kvstores over TLS (sslmode=verify-full)"
    fi
}

postgres_env() {
    if up_or_down postgres; then
        printf "export KVSTORES_TEST_POSTGRES_URL='%s'\n" "$PG_URL"
        if pg_tls; then
            printf "export KVSTORES_TEST_POSTGRES_TLS_URL='%s?sslmode=verify-full&sslrootcert=%s'\n" \
                "$PG_URL" "$(tls_file ca.pem)"
        fi
    fi
}
