#!/usr/bin/env bash
# Leader memory per pending job and per running job, on a 3-node cluster on 127.0.0.1.
#
#   deploy/local/memory.sh [DIR]
#
# For each kind, the leader's resident memory (RSS) is read at three sizes of the active
# set and the cost of a job is the slope between the two larger ones: by then sled's page
# cache (64 MiB) is full, so what remains is what each further job costs. Pending jobs: submitted in batches to a queue with no workers.
# Running jobs: held running for two hours on simulated pools. Results go to stdout and to
# DIR/results/memory.json.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-./.hodei/bench}"
mkdir -p "$dir/results"
dir="$(cd "$dir" && pwd)"
(cd "$root" && cargo build --release -p hodei-node -p hodei-chaos >&2)
export HODEI_BIN="$root/target/release/hodei"
chaos="$root/target/release/hodei-chaos"
cluster="$dir/cluster-memory"

leader_rss_kib() {
  local leader
  leader=$(curl -sf http://127.0.0.1:8081/api/v1/cluster/status | grep -o '"leader_id":[0-9]*' | grep -o '[0-9]*$')
  ps -o rss= -p "$(cat "$cluster/node$leader/pid")" | tr -d ' '
}

# Pending and running jobs of a bench queue, from its status.
queue_counts() {
  local status
  status=$(curl -sf "http://127.0.0.1:8081/api/v1/queues/$1/status")
  echo "$(echo "$status" | grep -o '"pending":[0-9]*' | head -1 | grep -o '[0-9]*$') $(echo "$status" | grep -o '"running":[0-9]*' | head -1 | grep -o '[0-9]*$')"
}

measure() {
  local kind=$1 queue=$2
  shift 2
  local sizes=() rss=()
  for round in 1 2 3; do
    "$@" "$round" >&2
    sleep 5
    read -r pending running <<<"$(queue_counts "$queue")"
    if [ "$kind" = pending ]; then sizes+=("$pending"); else sizes+=("$running"); fi
    rss+=("$(leader_rss_kib)")
    echo "memory $kind: round $round, ${sizes[-1]} jobs, leader RSS ${rss[-1]} KiB" >&2
  done
  local bytes=$(( (rss[2] - rss[1]) * 1024 / (sizes[2] - sizes[1]) ))
  echo "{\"kind\": \"$kind\", \"jobs\": [${sizes[0]}, ${sizes[1]}, ${sizes[2]}], \"leader_rss_kib\": [${rss[0]}, ${rss[1]}, ${rss[2]}], \"bytes_per_job\": $bytes}"
}

submit_round() {
  "$chaos" bench submit --clients 4 --batch 1000 --seconds 4 >/dev/null
}

run_round() {
  "$chaos" bench soak --target $(( $1 * 100000 )) --job-ms 7200000 --seconds 1 \
    --clients 4 --batch 500 --tenants 20 --workers 540 >/dev/null
}

# Each kind on a fresh cluster, so that one's jobs do not weigh on the other's figures.
fresh_cluster() {
  "$root/deploy/local/cluster.sh" down "$cluster" >&2 2>/dev/null || true
  rm -rf "$cluster"
  "$root/deploy/local/cluster.sh" up "$cluster" >&2
}
trap '"$root/deploy/local/cluster.sh" down "$cluster" >&2' EXIT
fresh_cluster
pending=$(measure pending bench-submit submit_round)
fresh_cluster
running=$(measure running bench-soak run_round)
echo "[$pending, $running]" | tee "$dir/results/memory.json"
