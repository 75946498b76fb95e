#!/usr/bin/env bash
# Measures a 3-node Hodei cluster on 127.0.0.1 with the load generator, scenario by
# scenario, each on a fresh cluster, and leaves the JSON results in DIR/results.
#
#   deploy/local/bench.sh [DIR] [SCENARIO...]
#
# DIR defaults to ./.hodei/bench; scenarios default to every one below. Each is
#   submit-single  64 clients, one job per call
#   submit-batch   8 clients, 1,000 jobs per call
#   read           64 clients reading jobs, tenant usage and queue status
#   mixed          64 clients, half submitting, half reading, jobs completed by a simulated pool
#   end-to-end     jobs submitted in batches of 200 and run (200 ms on average) on 8 virtual
#                  workers while 4 clients read: completions per second
#   soak-10k       10,000 jobs of 20 s running at once for 300 s, new ones arriving as old finish
#   agents         4 real `hodei worker` agents (2,000 slots each, runner `instant`: no process)
#                  fed jobs in batches of 200: completions per second through the worker
#                  hub, the agents' streams and their per-job reports
#   agents-10k     the same agents with runner `sleep:30000`, 10,000 jobs running at once:
#                  assignment-to-start latency under that load
#   soak-retention the soak-10k load (about 500 completions/s) for SOAK_SECONDS (default
#                  1,800) with finished_in_memory_s 120: each node's RSS and data folder
#                  sampled every 30 s into DIR/results/soak-retention-samples.csv
#   history        HISTORY_JOBS (default 1,000,000) finished jobs moved to the job history
#                  (finished_in_memory_s 60), then reads and reports over it polled by 16
#                  clients; then node 2 is restarted and timed to ready, and each node's
#                  data folder is measured
# SOAK_SECONDS shortens the soak (e.g. SOAK_SECONDS=60 for a quick look).
# Each scenario's cluster data is deleted when it stops (a 5-minute soak writes about 3 GB
# per node); its node logs stay in DIR/cluster-<scenario>.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-./.hodei/bench}"
shift || true
scenarios=("$@")
if [ "${#scenarios[@]}" -eq 0 ]; then
  scenarios=(submit-single submit-batch read mixed end-to-end soak-10k)
fi
mkdir -p "$dir/results"
dir="$(cd "$dir" && pwd)"

(cd "$root" && cargo build --release -p hodei-node -p hodei-chaos >&2)
export HODEI_BIN="$root/target/release/hodei"
chaos="$root/target/release/hodei-chaos"
nodes="127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093"
metrics="127.0.0.1:9191,127.0.0.1:9192,127.0.0.1:9193"

# Extra arguments of `cluster.sh up` for the next run (agents), and what runs after the
# bench while the cluster is still up (history).
cluster_args=()
after_bench=""
during_bench=""

run() {
  local name=$1
  shift
  local cluster="$dir/cluster-$name"
  rm -rf "$cluster"
  "$root/deploy/local/cluster.sh" up "$cluster" "${cluster_args[@]}" >&2
  trap '"$root/deploy/local/cluster.sh" down "$cluster" >&2' EXIT
  local sampler=""
  if [ -n "$during_bench" ]; then
    "$during_bench" "$cluster" "$dir/results/$name-samples.csv" &
    sampler=$!
  fi
  "$chaos" bench "$@" --nodes "$nodes" --metrics "$metrics" --out "$dir/results/$name.json"
  if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
  if [ -n "$after_bench" ]; then "$after_bench" "$cluster" "$dir/results/$name-after.json"; fi
  "$root/deploy/local/cluster.sh" down "$cluster" >&2
  trap - EXIT
  # A soak leaves gigabytes of sled files per node; keep the logs and configs only.
  rm -rf "$cluster"/node*/data
}

# After the history bench: each node's data folder, then node 2 restarted (kill -9) and
# timed until it reports ready again.
history_after() {
  local cluster=$1 out=$2 sizes="" started ready_ms
  for id in 1 2 3; do
    sizes="$sizes\"node$id\": $(du -sb "$cluster/node$id/data" | cut -f1), "
    sizes="$sizes\"node${id}_snapshots\": $(du -sb "$cluster/node$id/data/snapshots" | cut -f1), "
  done
  kill -9 "$(cat "$cluster/node2/pid")"
  sleep 1
  started=$(date +%s%N)
  HODEI_CLUSTER_SECRET="$(cat "$cluster/cluster-secret")" nohup "$HODEI_BIN" server \
    --config "$cluster/node2/config.yaml" >> "$cluster/node2/node.log" 2>&1 &
  echo $! > "$cluster/node2/pid"
  until curl -sf http://127.0.0.1:8082/api/v1/health | grep -q '"ready":true'; do sleep 0.05; done
  ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
  echo "{ \"data_bytes\": { ${sizes%, } }, \"restart_to_ready_ms\": $ready_ms }" > "$out"
  echo "history: data folders ${sizes%, }; node 2 ready ${ready_ms} ms after its restart" >&2
}

# During the retention soak: every 30 s, each node's resident memory (KiB) and data
# folder (bytes).
sample_nodes() {
  local cluster=$1 out=$2 started line
  started=$(date +%s)
  echo "seconds,rss_kib_node1,rss_kib_node2,rss_kib_node3,data_bytes_node1,data_bytes_node2,data_bytes_node3" > "$out"
  while true; do
    line="$(( $(date +%s) - started ))"
    # `|| true`: du fails when sled removes a file under it, and this script stops on errors.
    for id in 1 2 3; do
      line="$line,$( (ps -o rss= -p "$(cat "$cluster/node$id/pid")" 2>/dev/null || true) | tr -d ' ')"
    done
    for id in 1 2 3; do
      line="$line,$( (du -sb "$cluster/node$id/data" 2>/dev/null || true) | cut -f1)"
    done
    echo "$line" >> "$out"
    sleep 30
  done
}

for scenario in "${scenarios[@]}"; do
  cluster_args=()
  after_bench=""
  during_bench=""
  case "$scenario" in
    submit-single) run "$scenario" submit --clients 64 --seconds 10 ;;
    submit-batch) run "$scenario" submit --clients 8 --batch 1000 --seconds 10 ;;
    read) run "$scenario" read --clients 64 --seconds 10 ;;
    mixed) run "$scenario" mixed --clients 64 --seconds 10 --job-ms 500 ;;
    end-to-end) run "$scenario" mixed --clients 8 --batch 200 --job-ms 200 --workers 8 --seconds 15 ;;
    agents)
      cluster_args=(--workers 4 --worker-args "--runner instant --cpu-m 2000 --memory-mb 2000")
      run "$scenario" agents --clients 8 --batch 200 --target 20000 --seconds 15 ;;
    agents-10k)
      cluster_args=(--workers 4 --worker-args "--runner sleep:30000 --cpu-m 3000 --memory-mb 3000")
      run "$scenario" agents --clients 8 --batch 500 --target 10000 --seconds 20 ;;
    history)
      after_bench=history_after
      HODEI_FINISHED_IN_MEMORY_S=60 run "$scenario" history --clients 16 --tenants 10 \
        --target "${HISTORY_JOBS:-1000000}" --seconds 20 ;;
    soak-retention)
      during_bench=sample_nodes
      HODEI_FINISHED_IN_MEMORY_S=120 run "$scenario" soak --clients 16 --batch 500 --tenants 20 \
        --target 10000 --job-ms 20000 --seconds "${SOAK_SECONDS:-1800}" ;;
    soak-10k) run "$scenario" soak --clients 16 --batch 500 --tenants 20 --target 10000 --job-ms 20000 --seconds "${SOAK_SECONDS:-300}" ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
done
echo "results in $dir/results" >&2
