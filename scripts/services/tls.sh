# shellcheck shell=bash
# TLS material for scripts/services.sh (sourced by the driver, like lib.sh;
# not a server). With KVSTORES_SERVICES_TLS=1, `start` makes once per state
# dir, with openssl, a throw-away CA and a server certificate it signs, in
# $STATE/tls:
#   ca.pem, ca.key      the CA (its key root's, 0600)
#   server.pem          the servers' certificate, subjectAltName IP:127.0.0.1,
#                       IP:127.0.0.2, IP:127.0.0.3, DNS:localhost, 30 days
#   server.key          its key (PKCS#8, unencrypted), 0600 and owned by the
#                       service user: PostgreSQL refuses a key others can read
#   server-keycert.pem  server.key and server.pem in one file (Cassandra's PEM
#                       keystore), 0600, the service user's
#   wrong-ca.pem        an unrelated CA that signs nothing, for tests that a
#                       client checking the certificate refuses the servers
# They are made again only when missing or within a day of expiry; `stop`
# leaves them. Every server uses the same pair; none asks clients for a
# certificate.

TLS_DAYS=30

# Paths of the TLS files (STATE is absolute once the driver's main ran).
tls_dir() { printf '%s/tls\n' "$STATE"; }
tls_file() { printf '%s/tls/%s\n' "$STATE" "$1"; }

# The openssl config of the CA and server certificate extensions. Python's
# default context (VERIFY_X509_STRICT from 3.13) wants a critical CA
# basicConstraints, key usages and key identifiers.
tls_openssl_conf() {
    cat <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
# clientAuth too: Redis Cluster nodes present it to each other on the bus.
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, IP:127.0.0.2, IP:127.0.0.3, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
}

# Complete, with the key the service user's, and not expiring within a day.
tls_ok() {
    local f
    for f in ca.pem ca.key server.pem server.key server-keycert.pem wrong-ca.pem; do
        [[ -s $(tls_file "$f") ]] || return 1
    done
    [[ "$(stat -c %U "$(tls_file server.key)")" == "$SVC_USER" ]] || return 1
    openssl x509 -noout -checkend 86400 -in "$(tls_file server.pem)" >/dev/null 2>&1
}

# tls_ensure: make $STATE/tls unless it is complete and valid (see the top).
tls_ensure() {
    local dir work tlslog="$STATE/logs/tls.log"
    dir=$(tls_dir)
    tls_ok && return 0
    command -v openssl >/dev/null || die "TLS mode needs openssl (Debian: apt install openssl)"
    if [[ -e $dir ]]; then
        log "replacing $dir (incomplete, or expiring within a day); servers running with the old files keep them until restarted"
    fi
    log "making a throw-away CA and server certificate in $dir (log: $tlslog)"
    work=$(mktemp -d "$STATE/tls.new.XXXXXX")
    # Subshell: its own umask and output; every step checks its status (no
    # `set -e` in here).
    (
        umask 077
        exec >"$tlslog" 2>&1 </dev/null
        cd "$work" || exit 1
        tls_openssl_conf >openssl.cnf || exit 1
        openssl req -x509 -new -newkey rsa:2048 -nodes -config openssl.cnf -extensions ca \
            -subj "/O=kvstores tests/CN=kvstores test CA" -days "$TLS_DAYS" \
            -keyout ca.key -out ca.pem || exit 1
        openssl req -new -newkey rsa:2048 -nodes -config openssl.cnf \
            -subj "/O=kvstores tests/CN=localhost" -keyout server.key -out server.csr || exit 1
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
            -days "$TLS_DAYS" -extfile openssl.cnf -extensions server -out server.pem || exit 1
        openssl verify -CAfile ca.pem server.pem || exit 1
        # Its key is thrown away at once: it signs nothing.
        openssl req -x509 -new -newkey rsa:2048 -nodes -config openssl.cnf -extensions ca \
            -subj "/O=kvstores tests/CN=kvstores wrong CA" -days "$TLS_DAYS" \
            -keyout wrong-ca.key -out wrong-ca.pem || exit 1
        cat server.key server.pem >server-keycert.pem || exit 1
        rm -f server.csr wrong-ca.key openssl.cnf || exit 1
        chmod 644 ca.pem server.pem wrong-ca.pem && chmod 600 ca.key server.key server-keycert.pem &&
            chown "$SVC_USER:$SVC_USER" server.key server-keycert.pem && chmod 755 . || exit 1
    ) || {
        rm -rf "$work"
        fail tls "$tlslog" "making the TLS files failed"
    }
    rm -rf "$dir"
    mv "$work" "$dir"
}

# tls_handshake_ok IP PORT: a TLS handshake with IP:PORT succeeds, its
# certificate checked against our CA and for that IP.
tls_handshake_ok() {
    timeout 10 openssl s_client -connect "$1:$2" -CAfile "$(tls_file ca.pem)" \
        -verify_return_error -verify_ip "$1" </dev/null >/dev/null 2>&1
}

# The CA lines of the env file, once a server of ours speaks TLS.
tls_env() {
    if [[ -s $(tls_file ca.pem) && -s $(tls_file wrong-ca.pem) ]]; then
        printf "export KVSTORES_TEST_TLS_CA='%s'\n" "$(tls_file ca.pem)"
        printf "export KVSTORES_TEST_TLS_WRONG_CA='%s'\n" "$(tls_file wrong-ca.pem)"
    fi
}
