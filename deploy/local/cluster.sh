#!/usr/bin/env bash
# A 3-node Hodei cluster on 127.0.0.1, the way to try HA on a laptop.
#
#   deploy/local/cluster.sh up [DIR] [--workers N] [--worker-args "ARGS"] [--tls]
#                                         start nodes 1-3 (data and logs under DIR, default
#                                         ./.hodei/local) and N `hodei worker` agents in
#                                         pool-default that follow the leader (default 0),
#                                         each given ARGS too (e.g. "--cpu-m 2000"); with
#                                         --tls, a throwaway CA and node certificates are
#                                         drawn into DIR/tls (`hodei tls generate`) and
#                                         every port speaks TLS, the peer port mutual TLS
#                                         (clients: --ca-cert DIR/tls/ca.pem, https://)
#   deploy/local/cluster.sh status [DIR]  members, leader, term, match index and lag
#   deploy/local/cluster.sh down [DIR]    stop them (SIGTERM, then SIGKILL after 10 s)
#
# Node i serves REST on 127.0.0.1:808i, gRPC on 127.0.0.1:909i, Prometheus metrics on
# 127.0.0.1:919i and its peer port (Raft between members) on 127.0.0.1:929i (i = 1..3);
# the three form one cluster from `cluster.peers` (node 1, the lowest id, initialises it).
# The members share a cluster secret, drawn once into DIR/cluster-secret.
# deploy/prometheus/prometheus.yml scrapes them.
# HODEI_BIN selects the binary; otherwise target/release/hodei is built if missing.
set -euo pipefail

command="${1:-}"
shift || true
dir="./.hodei/local"
workers=0
worker_args=""
tls=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --tls) tls=1; shift ;;
    --workers) workers="${2:?--workers takes a number}"; shift 2 ;;
    --worker-args) worker_args="${2?--worker-args takes the arguments in one word}"; shift 2 ;;
    *) dir="$1"; shift ;;
  esac
done
root="$(cd "$(dirname "$0")/../.." && pwd)"
nodes=(1 2 3)

rest_port() { echo $((8080 + $1)); }
scheme() { if [ "$tls" = 1 ]; then echo https; else echo http; fi; }
# curl and the CLI trust the throwaway CA (with --tls).
tls_args() {
  if [ "$tls" = 1 ] || [ "$(cat "$dir/scheme" 2>/dev/null)" = https ]; then echo "--ca-cert $dir/tls/ca.pem"; fi
}
grpc_port() { echo $((9090 + $1)); }
metrics_port() { echo $((9190 + $1)); }
peer_port() { echo $((9290 + $1)); }

binary() {
  if [ -n "${HODEI_BIN:-}" ]; then echo "$HODEI_BIN"; return; fi
  if [ ! -x "$root/target/release/hodei" ]; then
    echo "building hodei (release)..." >&2
    (cd "$root" && cargo build --release -p hodei-node --bin hodei >&2)
  fi
  echo "$root/target/release/hodei"
}

write_config() {
  local id=$1 peers=""
  for other in "${nodes[@]}"; do
    [ "$other" = "$id" ] && continue
    peers="$peers\"$other@127.0.0.1:$(peer_port "$other")\", "
  done
  mkdir -p "$dir/node$id"
  local tls_keys=""
  if [ "$tls" = 1 ]; then
    # TLS on every port; mutual TLS between members.
    tls_keys="  tls:
    cert: $dir/tls/node-$id.pem
    key: $dir/tls/node-$id.key
    client_ca: $dir/tls/ca.pem"
  fi
  cat > "$dir/node$id/config.yaml" <<YAML
server:
  host: 127.0.0.1
  port: $(rest_port "$id")
  grpc_port: $(grpc_port "$id")
  log_format: json
$tls_keys
cluster:
  node_id: $id
  peer_port: $(peer_port "$id")
  data_dir: $dir/node$id/data
  peers: [${peers%, }]
metrics:
  prometheus:
    enabled: true
    port: $(metrics_port "$id")
YAML
}

up() {
  local hodei
  hodei="$(binary)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ "$tls" = 1 ] && [ ! -s "$dir/tls/ca.pem" ]; then
    "$hodei" tls generate --out "$dir/tls" --nodes "${#nodes[@]}"
  fi
  scheme > "$dir/scheme"
  if [ ! -s "$dir/cluster-secret" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/cluster-secret")
  fi
  for id in "${nodes[@]}"; do
    if [ -f "$dir/node$id/pid" ] && kill -0 "$(cat "$dir/node$id/pid")" 2>/dev/null; then
      echo "node $id already running (pid $(cat "$dir/node$id/pid"))"
      continue
    fi
    # A port already taken would make the node fail later with a less clear message;
    # `hodei dev` serves its metrics on 9091, node 1's gRPC port.
    for port in "$(rest_port "$id")" "$(grpc_port "$id")" "$(metrics_port "$id")" "$(peer_port "$id")"; do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is in use (is \`hodei dev\` running? it serves metrics on 9091): stop it first" >&2
        return 1
      fi
    done
    write_config "$id"
    HODEI_CLUSTER_SECRET="$(cat "$dir/cluster-secret")" nohup "$hodei" server --config "$dir/node$id/config.yaml" >> "$dir/node$id/node.log" 2>&1 &
    echo $! > "$dir/node$id/pid"
    echo "node $id: pid $!, REST $(scheme)://127.0.0.1:$(rest_port "$id")/api/v1, gRPC 127.0.0.1:$(grpc_port "$id"), peers 127.0.0.1:$(peer_port "$id"), metrics http://127.0.0.1:$(metrics_port "$id")/metrics, log $dir/node$id/node.log"
  done
  curl_tls=()
  if [ "$tls" = 1 ]; then curl_tls=(--cacert "$dir/tls/ca.pem"); fi
  for attempt in $(seq 1 100); do
    ready=0
    for id in "${nodes[@]}"; do
      if curl -sf "${curl_tls[@]}" "$(scheme)://127.0.0.1:$(rest_port "$id")/api/v1/health" | grep -q '"ready":true'; then
        ready=$((ready + 1))
      fi
    done
    if [ "$ready" = "${#nodes[@]}" ]; then
      echo "cluster ready"
      start_workers "$hodei"
      status
      return 0
    fi
    sleep 0.2
  done
  echo "the cluster did not become ready within 20 s; see the logs under $dir" >&2
  return 1
}

# Worker agents for the cluster: any node's gRPC address, they find and follow the leader.
start_workers() {
  local hodei=$1 servers=""
  for id in "${nodes[@]}"; do servers="${servers}127.0.0.1:$(grpc_port "$id"),"; done
  for index in $(seq 1 "$workers"); do
    local home="$dir/worker$index"
    if [ -f "$home/pid" ] && kill -0 "$(cat "$home/pid")" 2>/dev/null; then
      echo "worker $index already running (pid $(cat "$home/pid"))"
      continue
    fi
    mkdir -p "$home/work"
    # shellcheck disable=SC2086 # the extra arguments are words
    # shellcheck disable=SC2046 # tls_args is words
    nohup "$hodei" worker --id "ha-worker-$index" --pool pool-default --servers "${servers%,}" \
      --work-dir "$home/work" $(tls_args) $worker_args >> "$home/worker.log" 2>&1 &
    echo $! > "$home/pid"
    echo "worker ha-worker-$index: pid $!, log $home/worker.log"
  done
}

status() {
  # shellcheck disable=SC2046 # tls_args is words
  "$(binary)" cluster status --addr "127.0.0.1:$(grpc_port 1)" $(tls_args) 2>/dev/null \
    || "$(binary)" cluster status --addr "127.0.0.1:$(grpc_port 2)" $(tls_args) 2>/dev/null \
    || "$(binary)" cluster status --addr "127.0.0.1:$(grpc_port 3)" $(tls_args)
}

down() {
  # Workers first: they leave their pool while the cluster can still record it.
  for home in "$dir"/worker*; do
    [ -f "$home/pid" ] || continue
    local pid
    pid="$(cat "$home/pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "$(basename "$home") stopped"
    fi
    rm -f "$home/pid"
  done
  for id in "${nodes[@]}"; do
    local pid_file="$dir/node$id/pid"
    [ -f "$pid_file" ] || continue
    local pid
    pid="$(cat "$pid_file")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "node $id stopped"
    fi
    rm -f "$pid_file"
  done
}

case "$command" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up [DIR] [--workers N] | down [DIR] | status [DIR]" >&2; exit 2 ;;
esac
