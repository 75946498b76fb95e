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

run() {
  local name=$1
  shift
  local cluster="$dir/cluster-$name"
  rm -rf "$cluster"
  "$root/deploy/local/cluster.sh" up "$cluster" >&2
  trap '"$root/deploy/local/cluster.sh" down "$cluster" >&2' EXIT
  "$chaos" bench "$@" --nodes "$nodes" --metrics "$metrics" --out "$dir/results/$name.json"
  "$root/deploy/local/cluster.sh" down "$cluster" >&2
  trap - EXIT
  # A soak leaves gigabytes of sled files per node; keep the logs and configs only.
  rm -rf "$cluster"/node*/data
}

for scenario in "${scenarios[@]}"; do
  case "$scenario" in
    submit-single) run "$scenario" submit --clients 64 --seconds 10 ;;
    submit-batch) run "$scenario" submit --clients 8 --batch 1000 --seconds 10 ;;
    read) run "$scenario" read --clients 64 --seconds 10 ;;
    mixed) run "$scenario" mixed --clients 64 --seconds 10 --job-ms 500 ;;
    end-to-end) run "$scenario" mixed --clients 8 --batch 200 --job-ms 200 --workers 8 --seconds 15 ;;
    soak-10k) run "$scenario" soak --clients 16 --batch 500 --tenants 20 --target 10000 --job-ms 20000 --seconds "${SOAK_SECONDS:-300}" ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
done
echo "results in $dir/results" >&2
