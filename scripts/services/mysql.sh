# shellcheck shell=bash
# MariaDB for scripts/services.sh (sourced; helpers from lib.sh).

MYSQL_PORT="${KVSTORES_MYSQL_PORT:-53306}"
MYSQL_URL="mysql+pymysql://kvstores:kvstores@127.0.0.1:${MYSQL_PORT}/kvstores_test"

mysql_check() { port_setting KVSTORES_MYSQL_PORT "$MYSQL_PORT"; }

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

mysql_packages() {
    { mysqld_bin && command -v mariadb-install-db && mysql_client; } >/dev/null ||
        echo mariadb-server
}

mysql_root() { "$(mysql_client)" --defaults-file="$STATE/mysql/my.cnf" -uroot "$@"; }

mysql_ping() { mysql_root -e 'SELECT 1' >/dev/null 2>&1 && port_open "$MYSQL_PORT"; }

mysql_user_ok() {
    MYSQL_PWD=kvstores "$(mysql_client)" --no-defaults --protocol=tcp -h 127.0.0.1 \
        -P "$MYSQL_PORT" -u kvstores "$@" kvstores_test -e 'SELECT 1' >/dev/null 2>&1
}

# The [mysqld] lines of TLS (KVSTORES_SERVICES_TLS=1): tls.sh's certificate on
# the same port; plain connections still work.
mysql_tls_conf() {
    if ((TLS)); then
        printf '%s\n' "ssl_cert = $(tls_file server.pem)" "ssl_key = $(tls_file server.key)" \
            "ssl_ca = $(tls_file ca.pem)"
    fi
}

# Whether ours was started with TLS (its my.cnf says).
mysql_tls() { grep -q "^ssl_cert = " "$STATE/mysql/my.cnf" 2>/dev/null; }

# Logs in over TLS, checking the server's certificate and name.
mysql_tls_ok() { mysql_user_ok --ssl --ssl-ca="$(tls_file ca.pem)" --ssl-verify-server-cert; }

# mysql_launch LOGFILE: start the server of $STATE/mysql/my.cnf on its data,
# record its pid and wait until it answers.
mysql_launch() {
    local logf=$1 mysqld pid
    mysqld=$(mysqld_bin) || die "mysql: no mariadbd/mysqld binary found"
    # setsid: own session, so a Ctrl-C/SIGHUP aimed at the caller spares it.
    (cd / && exec setsid "$mysqld" --defaults-file="$STATE/mysql/my.cnf") </dev/null >>"$logf" 2>&1 9>&- &
    pid=$!
    record_pid mysql "$pid"
    wait_for mysql "$logf" "$pid" mysql_ping
}

mysql_start() {
    local dir="$STATE/mysql" logf cnf
    if running mysql "$MYSQL_PORT"; then
        log "mariadb already running on 127.0.0.1:$MYSQL_PORT"
        return 0
    fi
    mysql_stop
    ensure_port_free "$MYSQL_PORT" mysql
    log "starting mariadb on 127.0.0.1:$MYSQL_PORT"
    logf=$(new_log mysql)
    fresh_dir "$dir" "$dir/data" "$dir/run"
    cnf="$dir/my.cnf"
    # --defaults-file means no system my.cnf leaks in (ports, bind address...).
    cat >"$cnf" <<CONF
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
# 1: durable (KVSTORES_SERVICES_DURABLE=1); 2: a test instance's speed over
# durability (the redo log is flushed about once a second).
innodb_flush_log_at_trx_commit = $((DURABLE ? 1 : 2))
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
$(mysql_tls_conf)

[client]
socket = $dir/run/mysqld.sock
port = $MYSQL_PORT
max_allowed_packet = 64M
CONF
    chmod 644 "$cnf"

    (cd / && mariadb-install-db --defaults-file="$cnf" --auth-root-authentication-method=socket \
        --skip-test-db) >>"$logf" 2>&1 9>&- || fail mysql "$logf" "mariadb-install-db failed"

    mysql_launch "$logf"

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
    if mysql_tls; then
        mysql_tls_ok || fail mysql "$logf" "cannot log in as kvstores over TLS (--ssl-verify-server-cert)"
    fi
}

mysql_stop() { stop_recorded mysql TERM; }

# stop_node 1: stop the server, keeping its data directory and my.cnf.
mysql_stop_node() {
    single_node mysql "$1"
    node_running mysql || return 0
    mysql_stop
    mark_down mysql
    log "mysql stopped; its data is kept in $STATE/mysql/data"
}

# start_node 1: start it again on its kept data directory and my.cnf.
mysql_start_node() {
    local logf
    single_node mysql "$1"
    node_stopped mysql mysql "$STATE/mysql/my.cnf" || return 0
    ensure_port_free "$MYSQL_PORT" mysql
    log "starting mariadb on 127.0.0.1:$MYSQL_PORT (kept data in $STATE/mysql/data)"
    rotate_log mysql
    logf=$(new_log mysql)
    mysql_launch "$logf"
    mysql_user_ok || fail mysql "$logf" "cannot log in as kvstores over TCP"
    if mysql_tls; then
        mysql_tls_ok || fail mysql "$logf" "cannot log in as kvstores over TLS (--ssl-verify-server-cert)"
    fi
}

mysql_env() {
    if up_or_down mysql; then
        printf "export KVSTORES_TEST_MYSQL_URL='%s'\n" "$MYSQL_URL"
        if mysql_tls; then
            printf "export KVSTORES_TEST_MYSQL_TLS_URL='%s?ssl_ca=%s&ssl_check_hostname=true'\n" \
                "$MYSQL_URL" "$(tls_file ca.pem)"
        fi
    fi
}
