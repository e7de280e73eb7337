#!/bin/sh
# Run every bench script once, in sequence (they must not overlap: 2 cores),
# each bounded by a timeout; outputs go to $OUT (default /work/benchrun/results).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-/work/venv/bin/python}
OUT=${OUT:-/work/benchrun/results}
mkdir -p "$OUT"
run() {
    name=$1; shift
    echo "### $name: $PY $*"
    timeout 600 "$PY" "$@" 2>"$OUT/$name.stderr" | tee "$OUT/$name.txt"
    echo
}
run report         -m trio_codex.bench --out "$OUT/report" --readme none
run load-scenarios bench/load.py --scenarios
run load-paced     bench/load.py --vs orig --threads 20 --turns 2 --deltas 200 --delay-ms 5
run delta-cpu      bench/delta_cpu.py
run first-delta    bench/first_delta.py
run first-delta-10 bench/first_delta.py --threads 10 --turns 5
run stress         bench/stress.py
run startup        bench/startup.py
run http-path      bench/http_read_path.py
run tool-turn      bench/tool_turn.py --profile cprofile
run where-cprofile bench/where_cpu.py --tool cprofile
run where-pyspy    bench/where_cpu.py --tool pyspy
run thread-store   bench/thread_store.py
run analytics      bench/analytics_overhead.py
run ws-load        bench/ws_load.py
run ws-load-50     bench/ws_load.py --clients 50 --turns 5
run exec-cold     bench/exec_cold_start.py
run embed-clients bench/embed_clients.py
run idle-conns    bench/idle_connections.py
