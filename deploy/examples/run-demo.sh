#!/usr/bin/env bash
# The local demo behind `make run`: dpvs-agent-emu (the emulated DPVS control
# API), demo backends on 127.0.0.x and the all-in-one healthmesh, all on
# loopback. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
DATA=${DATA:-.data}
mkdir -p "$DATA"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$BIN/dpvs-agent-emu" -listen 127.0.0.1:8082 -seed deploy/examples/demo-agent.yaml \
  -log "$DATA/agent-calls.jsonl" 2>"$DATA/dpvs-agent-emu.log" &
pids+=($!)
"$BIN/demo-backends" -config deploy/examples/demo-backends.yaml -control 127.0.0.1:7000 \
  >"$DATA/demo-backends.out" 2>"$DATA/demo-backends.log" &
pids+=($!)

cat <<'TXT'
healthmesh demo — where to look:
  status tree      curl -s 127.0.0.1:6601/status
  metrics          curl -s 127.0.0.1:6601/metrics
  transitions      bin/hmctl watch            (or: nats sub 'hm.event.>')
  history          bin/hmctl history --since 10m
  DPVS as applied  curl -s 127.0.0.1:8082/_emu/state
  fail a backend   curl -s -XPOST 127.0.0.1:7000/fail/web1     (recover: /recover/web1)
TXT

"$BIN/healthmesh" -config-file deploy/examples/healthmesh.conf -dpvs-agent-addr 127.0.0.1:8082 \
  -data-dir "$DATA/jetstream" -nats-addr 127.0.0.1:4222 -metric-server-addr 127.0.0.1:6601 \
  -node demo -log-format console &
pids+=($!)
wait "${pids[-1]}"
