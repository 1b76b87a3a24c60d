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
        -P "$MYSQL_PORT" -u kvstores kvstores_test -e 'SELECT 1' >/dev/null 2>&1
}

mysql_start() {
    local dir="$STATE/mysql" logf cnf mysqld pid
    if running mysql "$MYSQL_PORT"; then
        log "mariadb already running on 127.0.0.1:$MYSQL_PORT"
        return 0
    fi
    mysql_stop
    ensure_port_free "$MYSQL_PORT" mysql
    log "starting mariadb on 127.0.0.1:$MYSQL_PORT"
    mysqld=$(mysqld_bin) || die "mysql: no mariadbd/mysqld binary found"
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
# Test instance: speed over durability.
innodb_flush_log_at_trx_commit = 2
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci

[client]
socket = $dir/run/mysqld.sock
port = $MYSQL_PORT
max_allowed_packet = 64M
CONF
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

mysql_stop() { stop_recorded mysql TERM; }

mysql_env() {
    if recorded_pid mysql >/dev/null; then
        printf "export KVSTORES_TEST_MYSQL_URL='%s'\n" "$MYSQL_URL"
    fi
}
