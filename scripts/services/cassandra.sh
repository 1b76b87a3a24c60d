# shellcheck shell=bash
# Apache Cassandra 5.0 (single node) for scripts/services.sh (sourced; helpers
# from lib.sh). cassandra_jars, cassandra_java, cassandra_write_conf,
# cassandra_launch, cassandra_cql_ready and cassandra_stop_nodes are also used
# by cassandra-cluster.sh.
#
# There is no Debian package: the server is cassandra-all from Maven Central
# with its runtime dependencies, fetched once with mvn into
# ${XDG_CACHE_HOME:-~/.cache}/kvstores-services (67 MiB, 10-25 s from an empty
# Maven cache) and run with `java` 17 directly (Cassandra 5.0 refuses newer
# Java), with the JVM options of its own conf/jvm-server.options and
# conf/jvm17-server.options. cassandra.yaml and logback.xml are written here.

CASSANDRA_VERSION=5.0.9
# Bump when the fetch recipe (pom or mvn command) below changes.
CASSANDRA_RECIPE=1
CASSANDRA_PORT="${KVSTORES_CASSANDRA_PORT:-59042}"
# Inter-node port: the default 7000 collides with too much (Redis Cluster...).
CASSANDRA_STORAGE_PORT="${KVSTORES_CASSANDRA_STORAGE_PORT:-57100}"
CASSANDRA_JMX_PORT="${KVSTORES_CASSANDRA_JMX_PORT:-57199}"
# The stores create the keyspace (replication factor 1) on first use.
CASSANDRA_URL="cassandra://127.0.0.1:${CASSANDRA_PORT}/kvstores_test?replication_factor=1"
# Cassandra needs 6-14 s to serve CQL, much more on a loaded 2-core machine.
CASSANDRA_WAIT=$((WAIT_SECS > 120 ? WAIT_SECS : 120))

# The static options of Cassandra 5.0's conf/jvm-server.options and
# conf/jvm17-server.options. Left out: -XX:+AlwaysPreTouch (slower start and the
# whole heap resident at once) and heap dumps (the cwd is not writable).
CASSANDRA_JVM_OPTS=(
    -Xms512M -Xmx1G -Xss256k
    -ea -da:net.openhft...
    -XX:+UseThreadPriorities -XX:+UseTLAB -XX:+ResizeTLAB -XX:+UseNUMA
    -XX:+PerfDisableSharedMem -Djava.net.preferIPv4Stack=true
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
    -XX:G1HeapRegionSize=16m -XX:G1RSetUpdatingPauseTimePercent=5
    -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    # Not from the options files: die on OutOfMemoryError (as cassandra-env.sh
    # has it), keep logging on stdout (our log file), don't wait for gossip to
    # settle at start, nor 2 s after announcing shutdown at stop: a test
    # cluster starts and stops as a whole.
    -XX:+ExitOnOutOfMemoryError
    -Dcassandra-foreground=yes
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.shutdown_announce_in_ms=500
)

cassandra_check() {
    port_setting KVSTORES_CASSANDRA_PORT "$CASSANDRA_PORT"
    port_setting KVSTORES_CASSANDRA_STORAGE_PORT "$CASSANDRA_STORAGE_PORT"
    port_setting KVSTORES_CASSANDRA_JMX_PORT "$CASSANDRA_JMX_PORT"
    local -A seen=()
    local p
    for p in "$CASSANDRA_PORT" "$CASSANDRA_STORAGE_PORT" "$CASSANDRA_JMX_PORT"; do
        [[ -z ${seen[$p]:-} ]] ||
            die "KVSTORES_CASSANDRA_PORT, _STORAGE_PORT and _JMX_PORT must differ (two are $p)"
        seen[$p]=1
    done
}

# mvn is only needed until the jars are cached; Java 17 is checked at start
# (cassandra_java), since Debian's maven package may be what brings it.
cassandra_packages() {
    cassandra_jars_ok "$(cassandra_jars_path)" || command -v mvn >/dev/null || echo maven
}

# ------------------------------------------------------------ shared by nodes

cassandra_cache_dir() { printf '%s\n' "${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/kvstores-services"; }

# The throw-away Maven project whose runtime dependencies are the server.
cassandra_pom() {
    cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kvstores</groupId>
  <artifactId>cassandra-server</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$CASSANDRA_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
}

# Directory of the cached jars for this version, recipe and pom.
cassandra_jars_path() {
    local key
    key=$({
        printf 'cassandra %s recipe %s\n' "$CASSANDRA_VERSION" "$CASSANDRA_RECIPE"
        cassandra_pom
    } | sha256sum)
    printf '%s/cassandra-%s-%s\n' "$(cassandra_cache_dir)" "$CASSANDRA_VERSION" "${key:0:12}"
}

# Complete: the directory is renamed into place only after a successful fetch.
cassandra_jars_ok() {
    [[ -f $1/cassandra-all-$CASSANDRA_VERSION.jar ]] && compgen -G "$1/jamm-*.jar" >/dev/null
}

# cassandra_jars: print the directory of cassandra-all and its runtime jars,
# fetching them with Maven first unless cached. Only the path goes to stdout;
# Maven's output goes to $STATE/logs/cassandra-fetch.log.
cassandra_jars() {
    local jars cache fetchlog
    jars=$(cassandra_jars_path)
    if cassandra_jars_ok "$jars"; then
        printf '%s\n' "$jars"
        return 0
    fi
    cache=$(cassandra_cache_dir)
    fetchlog="$STATE/logs/cassandra-fetch.log"
    install -d -m 755 "$cache" || die "cassandra: cannot create $cache"
    command -v mvn >/dev/null || die "cassandra: fetching Cassandra needs mvn (apt package maven)"
    log "fetching Cassandra $CASSANDRA_VERSION jars with Maven (10-25 s from an empty Maven cache; log: $fetchlog)"
    # Subshell: its own lock (fetches from several state dirs share the cache),
    # EXIT trap and cwd; every step checks its status (no `set -e` in here).
    (
        exec 8>"$cache/.cassandra-fetch.lock" 9>&- </dev/null
        flock -w 1800 8 || die "cassandra: could not lock $cache/.cassandra-fetch.lock"
        if cassandra_jars_ok "$jars"; then
            exit 0 # another invocation fetched them while we waited
        fi
        work=$(mktemp -d "$cache/cassandra-fetch.XXXXXX") || exit 1
        trap 'rm -rf "$work"' EXIT
        exec >"$fetchlog" 2>&1
        cassandra_pom >"$work/pom.xml" || exit 1
        cd "$work" || exit 1
        # The project's own dependency (cassandra-all) is copied too.
        mvn -B -q -Dstyle.color=never \
            org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$work/lib" || exit 1
        cassandra_jars_ok "$work/lib" || {
            echo "mvn left no cassandra-all-$CASSANDRA_VERSION.jar and jamm jar in $work/lib"
            exit 1
        }
        chmod 644 "$work"/lib/*.jar && chmod 755 "$work/lib" || exit 1
        rm -rf "$jars" && mv "$work/lib" "$jars" || exit 1
    ) || fail cassandra-fetch "$fetchlog" "fetching the Cassandra jars failed"
    log "fetched $jars"
    printf '%s\n' "$jars"
}

# Major version of a java binary (e.g. 17), from `java -version`.
cassandra_java_major() {
    local out
    out=$("$1" -version 2>&1) || return 1
    [[ $out =~ version\ \"(1\.)?([0-9]+) ]] || return 1
    printf '%s\n' "${BASH_REMATCH[2]}"
}

# Path of a Java 17: JAVA_HOME's, PATH's, a GitHub runner's or Debian's.
cassandra_java() {
    local j
    for j in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" \
        ${JAVA_HOME_17_X64:+"$JAVA_HOME_17_X64/bin/java"} /usr/lib/jvm/*17*/bin/java; do
        if [[ -x $j && "$(cassandra_java_major "$j" 2>/dev/null)" == 17 ]]; then
            printf '%s\n' "$j"
            return 0
        fi
    done
    die "cassandra: Cassandra $CASSANDRA_VERSION needs Java 17 (found none on PATH, in JAVA_HOME or /usr/lib/jvm; Debian: apt install openjdk-17-jre-headless)"
}

# Whether IP:PORT speaks CQL: an OPTIONS request (protocol v4) answered with
# SUPPORTED. Stronger than an open port, and needs no client library.
cassandra_cql_ready() {
    local reply
    # shellcheck disable=SC2016 # expanded by the inner bash
    reply=$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "\x04\x00\x00\x00\x05\x00\x00\x00\x00" >&3
        head -c 9 <&3 | od -An -tx1' _ "$1" "$2" 2>/dev/null) || return 1
    reply=${reply//[[:space:]]/}
    [[ $reply == 8400000006* ]]
}

# Whether something accepts TCP connections on IP:PORT (lib.sh's port_open
# only knows 127.0.0.1).
cassandra_port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

cassandra_ensure_port_free() { # IP PORT NAME
    if cassandra_port_open "$1" "$2"; then
        log "port $1:$2 is already in use by a process this script did not start:"
        ss -ltnp "sport = :$2" >&2 2>/dev/null || true
        die "$3: cannot listen on $1:$2"
    fi
}

# The commitlog sync lines of cassandra.yaml. Durable: batch, a write is
# acknowledged after its commitlog fsync (Cassandra 5.0 has no
# commitlog_sync_batch_window_in_ms any more, and batch mode takes no
# commitlog_sync_period). Else periodic: fsync every 10 s.
cassandra_commitlog_conf() {
    if ((DURABLE)); then
        printf '%s\n' "commitlog_sync: batch"
    else
        printf '%s\n' "commitlog_sync: periodic" "commitlog_sync_period: 10000ms"
    fi
}

# cassandra_write_conf DIR CLUSTER IP CQL_PORT STORAGE_PORT SEEDS TOKEN: a fresh
# node directory DIR (conf, data dirs) for a node at IP; SEEDS are "ip:port,...".
cassandra_write_conf() {
    local dir=$1 cluster=$2 ip=$3 cql=$4 storage=$5 seeds=$6 token=$7
    fresh_dir "$dir" "$dir/conf" "$dir/data" "$dir/commitlog" "$dir/saved_caches" \
        "$dir/hints" "$dir/cdc_raw" "$dir/triggers" "$dir/tmp"
    cat >"$dir/conf/cassandra.yaml" <<YAML
# kvstores test node: loopback only, non-default ports; speed over durability
# unless KVSTORES_SERVICES_DURABLE=1.
cluster_name: '$cluster'
num_tokens: 1
initial_token: $token
auto_bootstrap: false
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
# A fresh 5.0-only cluster: no 4.x-compatible formats.
storage_compatibility_mode: NONE
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$seeds"
listen_address: $ip
rpc_address: $ip
storage_port: $storage
native_transport_port: $cql
start_native_transport: true
data_file_directories:
  - $dir/data
commitlog_directory: $dir/commitlog
saved_caches_directory: $dir/saved_caches
hints_directory: $dir/hints
cdc_raw_directory: $dir/cdc_raw
$(cassandra_commitlog_conf)
# commitlog_segment_size: Cassandra's default, 32 MiB, so the largest mutation
# is 16 MiB, as on a stock server (the stores' value ceiling is checked on it).
# TRUNCATE and DROP would snapshot first: slow, and fills the disk in tests.
auto_snapshot: false
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
key_cache_size: 16MiB
file_cache_size: 64MiB
concurrent_compactors: 1
# Batch size thresholds and the CQL message limit: Cassandra's defaults, as on a
# stock server (the stores' single-partition batches are checked against them).
# A loaded CI machine (several JVMs on two cores): longer server-side timeouts
# and a less eager failure detector than production defaults.
read_request_timeout: 10000ms
range_request_timeout: 10000ms
write_request_timeout: 10000ms
counter_write_request_timeout: 10000ms
phi_convict_threshold: 12
YAML
    cat >"$dir/conf/logback.xml" <<'XML'
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %logger{0}:%line - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="STDOUT"/>
  </root>
</configuration>
XML
    chown -R "$SVC_USER:$SVC_USER" "$dir/conf"
}

# cassandra_launch NAME DIR JARS JAVA JMX_PORT: start the node of DIR (written
# by cassandra_write_conf, jars in JARS) in the background and record its pid
# as NAME; cassandra_cql_ready says when it serves.
cassandra_launch() {
    local name=$1 dir=$2 jars=$3 java=$4 jmx=$5 logf pid
    local -a jamm=("$jars"/jamm-*.jar)
    logf=$(new_log "$name")
    # setpriv execs java itself as the service user, so $! is the JVM's pid;
    # setsid: spared by a Ctrl-C of the caller. Without CAP_IPC_LOCK and with a
    # tiny memlock allowance (the machine's may be unlimited), Cassandra's
    # mlockall fails with one warning (ENOMEM) instead of pinning ~900 MiB per
    # node.
    (cd / && ulimit -l 64 && exec setsid setpriv --reuid="$SVC_USER" --regid="$SVC_USER" \
        --init-groups --inh-caps=-ipc_lock --bounding-set=-ipc_lock -- \
        "$java" "${CASSANDRA_JVM_OPTS[@]}" "-javaagent:${jamm[0]}" \
        "-Dcassandra.config=file://$dir/conf/cassandra.yaml" \
        "-Dlogback.configurationFile=$dir/conf/logback.xml" \
        "-Dcassandra.logdir=$dir" "-Dcassandra.storagedir=$dir" \
        "-Dcassandra.triggers_dir=$dir/triggers" "-Dcassandra.jmx.local.port=$jmx" \
        "-Djava.io.tmpdir=$dir/tmp" "-Djna.tmpdir=$dir/tmp" \
        -cp "$jars/*" org.apache.cassandra.service.CassandraDaemon) \
        </dev/null >>"$logf" 2>&1 9>&- &
    pid=$!
    record_pid "$name" "$pid"
}

# cassandra_stop_nodes NAME...: SIGTERM every recorded node at once (a node
# drains on TERM; one whose peers are already gone takes ~18 s), SIGKILL what is
# left after 20 s: the state is thrown away anyway.
cassandra_stop_nodes() {
    local name pid deadline=$((SECONDS + 20))
    local -a pids=()
    for name in "$@"; do
        if pid=$(recorded_pid "$name"); then
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for pid in "${pids[@]}"; do
        while pid_alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.2
        done
    done
    # Gone ones just lose their pid file; survivors get SIGKILL.
    for name in "$@"; do
        stop_recorded "$name" KILL
    done
}

# ------------------------------------------------------------ the single node

cassandra_ready() {
    recorded_pid cassandra >/dev/null && cassandra_cql_ready 127.0.0.1 "$CASSANDRA_PORT"
}

# Launch only; cassandra_wait (after every server was launched) waits for CQL.
cassandra_start() {
    local dir="$STATE/cassandra" jars java
    if cassandra_ready; then
        log "cassandra already running on 127.0.0.1:$CASSANDRA_PORT"
        return 0
    fi
    cassandra_stop # half-dead leftovers of ours, if any
    ensure_port_free "$CASSANDRA_PORT" cassandra
    ensure_port_free "$CASSANDRA_STORAGE_PORT" cassandra
    ensure_port_free "$CASSANDRA_JMX_PORT" cassandra
    java=$(cassandra_java)
    jars=$(cassandra_jars)
    log "starting cassandra on 127.0.0.1:$CASSANDRA_PORT (storage port $CASSANDRA_STORAGE_PORT, JMX $CASSANDRA_JMX_PORT)"
    cassandra_write_conf "$dir" kvstores-cassandra 127.0.0.1 "$CASSANDRA_PORT" \
        "$CASSANDRA_STORAGE_PORT" "127.0.0.1:$CASSANDRA_STORAGE_PORT" -9223372036854775808
    if ((TLS)); then
        # TLS and plain CQL on the same port (optional: true), with tls.sh's key
        # and certificate as a PEM keystore (an unencrypted PKCS#8 key needs no
        # password); clients need no certificate.
        cat >>"$dir/conf/cassandra.yaml" <<YAML
client_encryption_options:
  enabled: true
  optional: true
  require_client_auth: false
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: $(tls_file server-keycert.pem)
YAML
    fi
    # The cache may sit under root's private home: give the service user a copy.
    cp -R "$jars" "$dir/lib"
    cassandra_launch cassandra "$dir" "$dir/lib" "$java" "$CASSANDRA_JMX_PORT"
}

# Whether ours was started with TLS (its cassandra.yaml says).
cassandra_tls() { grep -q '^client_encryption_options:' "$STATE/cassandra/conf/cassandra.yaml" 2>/dev/null; }

cassandra_wait() {
    local pid
    pid=$(recorded_pid cassandra) ||
        fail cassandra "$STATE/logs/cassandra.log" "server process exited during startup"
    wait_for_t "$CASSANDRA_WAIT" cassandra "$STATE/logs/cassandra.log" "$pid" \
        cassandra_cql_ready 127.0.0.1 "$CASSANDRA_PORT"
    if cassandra_tls; then
        tls_handshake_ok 127.0.0.1 "$CASSANDRA_PORT" ||
            fail cassandra "$STATE/logs/cassandra.log" "no TLS handshake on 127.0.0.1:$CASSANDRA_PORT"
        log "cassandra serves CQL on 127.0.0.1:$CASSANDRA_PORT (plain and TLS)"
        return 0
    fi
    log "cassandra serves CQL on 127.0.0.1:$CASSANDRA_PORT"
}

cassandra_stop() { cassandra_stop_nodes cassandra; }

# stop_node 1: stop the node (SIGTERM, SIGKILL after 20 s, as `stop` does),
# keeping its directory (config, data, commitlog).
cassandra_stop_node() {
    single_node cassandra "$1"
    node_running cassandra || return 0
    cassandra_stop_nodes cassandra
    mark_down cassandra
    log "cassandra stopped; its data is kept in $STATE/cassandra"
}

# start_node 1: restart the node on its kept config and data (commitlog replay
# and sstables) and wait until it serves CQL.
cassandra_start_node() {
    local dir="$STATE/cassandra" java
    single_node cassandra "$1"
    node_stopped cassandra cassandra "$dir/conf/cassandra.yaml" || return 0
    [[ -d $dir/lib ]] || die "cassandra: no kept jars in $dir/lib; run: $0 start cassandra"
    ensure_port_free "$CASSANDRA_PORT" cassandra
    ensure_port_free "$CASSANDRA_STORAGE_PORT" cassandra
    ensure_port_free "$CASSANDRA_JMX_PORT" cassandra
    java=$(cassandra_java)
    log "starting cassandra on 127.0.0.1:$CASSANDRA_PORT (kept data in $dir)"
    # cassandra_launch starts a fresh log: keep the previous run's.
    rotate_log cassandra
    cassandra_launch cassandra "$dir" "$dir/lib" "$java" "$CASSANDRA_JMX_PORT"
    cassandra_wait
    # The Data API emulator over this node (dataapi) reconnects by itself, a
    # few seconds later: wait for it, so that its next request does not fail.
    if declare -F dataapi_ready >/dev/null && recorded_pid dataapi >/dev/null; then
        wait_for dataapi "$STATE/logs/dataapi.log" "" dataapi_ready
        log "dataapi serves again over the restarted cassandra"
    fi
}

# Printed while the node is stopped by stop-node too; with the CA of its TLS
# when it was started with TLS (its cassandra.yaml says).
cassandra_env() {
    if up_or_down cassandra; then
        printf "export KVSTORES_TEST_CASSANDRA_URL='%s'\n" "$CASSANDRA_URL"
        if cassandra_tls; then
            printf "export KVSTORES_TEST_CASSANDRA_TLS_CA='%s'\n" "$(tls_file ca.pem)"
        fi
    fi
}
