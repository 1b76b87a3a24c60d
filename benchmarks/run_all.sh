#!/usr/bin/env bash
# Every backend's benchmark at batches 1 and 100, sync and async, into one JSON Lines file,
# then the noise runs, the SQL backends against raw statements on the store's own table
# (--raw-schema store, into store-schema.jsonl) and the charts: what the README's speed
# table and chart come from.
#
#   bash scripts/services.sh start > /tmp/services.env; set -a; . /tmp/services.env; set +a
#   bash benchmarks/run_all.sh [OUT_DIR]        # default: bench-results/
#
# The servers' URLs come from the KVSTORES_TEST_* variables scripts/services.sh prints.
# LangChain's side needs `pip install -r benchmarks/requirements.txt` (else it is left out).
# Each run's table is also kept as <out>/<name>.txt.
# FerretDB, Cassandra and the Data API emulator run smaller workloads: FerretDB scans its
# table for every statement, and batch 1 there takes minutes per phase otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-results}"
mkdir -p "$out"
json="$out/results.jsonl"
: > "$json"
: > "$out/noise.jsonl"
: > "$out/store-schema.jsonl"
rounds="${KVSTORES_BENCH_ROUNDS:-5}"
py="${PYTHON:-python3}"

run() {
    local name="$1" into="$2"
    shift 2
    echo "== $name: $*" >&2
    "$py" "$@" --rounds "$rounds" --quiet --json "$into" | tee "$out/$name.txt"
}

run memory "$json" benchmarks/bench_memory.py --batches 1,100
run file "$json" benchmarks/bench_file.py --dir /dev/shm --batches 1,100
run sql "$json" benchmarks/bench_sql.py --backends sqlite,postgres,mysql --batches 1,100
run redis "$json" benchmarks/bench_redis.py --targets redis,cluster --batches 1,100
run mongodb "$json" benchmarks/bench_mongodb.py --targets bytes --batches 1,100 --keys 500
run cassandra "$json" benchmarks/bench_cassandra.py --batches 1,100 --keys 2000
run astradb "$json" benchmarks/bench_astradb.py --batches 1,100 --keys 500
run noise "$out/noise.jsonl" benchmarks/noise.py --backends memory,sqlite,postgres,mysql,redis \
    --batches 1,100
run noise-cassandra "$out/noise.jsonl" benchmarks/noise.py --backends cassandra --batches 1,100 \
    --keys 2000
run sql-store-schema "$out/store-schema.jsonl" benchmarks/bench_sql.py --raw-schema store \
    --backends sqlite,postgres,mysql --batches 1,100
"$py" benchmarks/chart.py "$json" --batch 100 --out "$out/speed-batch100.svg" \
    --title "kvstores and LangChain's stores against the raw driver, batch 100"
"$py" benchmarks/chart.py "$json" --batch 1 --out "$out/speed-batch1.svg" \
    --title "kvstores and LangChain's stores against the raw driver, batch 1"
echo "results: $json, noise: $out/noise.jsonl, charts: $out/speed-batch100.svg, $out/speed-batch1.svg" >&2
