#!/usr/bin/env bash
# Real processes on one node: 2,000 trivial jobs (`true`) run by `hodei dev`'s two local
# `hodei worker` agents, against the same machine spawning /bin/true 2,000 times with 4 in
# flight (xargs -P4), in the same sitting, RUNS times each (default 3), alternating.
#
#   deploy/local/bench-processes.sh [DIR]
#
# `hodei dev` needs its ports (8080, 9090, 9091) free. Each job asks for 100 m and 64 MiB;
# the default tenant runs at most 10 at once (its default quota). Prints one line per run
# and writes DIR/results/processes.json (default DIR ./.hodei/bench).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-./.hodei/bench}"
mkdir -p "$dir/results"
dir="$(cd "$dir" && pwd)"
runs="${RUNS:-3}"
jobs=2000
(cd "$root" && cargo build --release -p hodei-node >&2)
hodei="$root/target/release/hodei"

now_ms() { date +%s%3N; }

baseline() {
  local started ended
  started=$(now_ms)
  seq "$jobs" | xargs -P4 -n1 /bin/true
  ended=$(now_ms)
  echo "scale=1; $jobs * 1000 / ($ended - $started)" | bc
}

hodei_run() {
  local home="$dir/processes-dev" started ended pid body
  rm -rf "$home"
  mkdir -p "$home"
  (cd "$home" && exec "$hodei" dev > "$home/dev.log" 2>&1) &
  pid=$!
  until curl -sf http://127.0.0.1:8080/api/v1/health | grep -q '"ready":true'; do sleep 0.1; done
  until [ "$(curl -sf 'http://127.0.0.1:8080/api/v1/workers?pool=pool-default' | python3 -c 'import json,sys; print(sum(1 for w in json.load(sys.stdin)["items"] if w["state"] in ("idle","busy")))')" = 2 ]; do
    sleep 0.1
  done
  body=$(python3 -c 'import json; print(json.dumps({"jobs": [{"command": {"argv": ["true"]}, "resources": {"cpu_m": 100, "memory_mb": 64}}] * 1000}))')
  started=$(now_ms)
  for _ in $(seq 1 $((jobs / 1000))); do
    curl -sf -X POST -H 'content-type: application/json' -d "$body" http://127.0.0.1:8080/api/v1/jobs/batch > /dev/null
  done
  until [ "$(curl -sf http://127.0.0.1:8080/api/v1/pools/pool-default/metrics | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"]["finished"])')" -ge "$jobs" ]; do
    sleep 0.05
  done
  ended=$(now_ms)
  kill -TERM "$pid"
  wait "$pid" || true
  rm -rf "$home"
  echo "scale=1; $jobs * 1000 / ($ended - $started)" | bc
}

results=()
for run in $(seq 1 "$runs"); do
  base=$(baseline)
  ours=$(hodei_run)
  ratio=$(echo "scale=3; $ours / $base" | bc)
  echo "run $run: /bin/true with 4 in flight ${base}/s, hodei dev (2 workers) ${ours} jobs/s, ratio ${ratio}" >&2
  results+=("{\"run\": $run, \"spawn_per_second\": $base, \"hodei_jobs_per_second\": $ours, \"ratio\": $ratio}")
done
(IFS=,; echo "[${results[*]}]") > "$dir/results/processes.json"
echo "results in $dir/results/processes.json" >&2
