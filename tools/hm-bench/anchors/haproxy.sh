#!/bin/bash
# haproxy.sh N [INTER_MS] — the HAProxy anchor of BENCHMARKS.md: HAProxy's own
# connect checks of N loopback TCP backends (demo-backends, N a multiple of
# 1,000) every INTER_MS (default 1000), in a private network namespace, on
# this machine. Prints HAProxy's CPU seconds per 1,000 checks (and the kernel
# part), its RSS divided by N, and the backends' CPU, over a 30 s window after
# 10 s of warm-up. Needs root, haproxy and socat (apt-get install haproxy socat) and
# `make build` (bin/demo-backends).
set -euo pipefail
N=${1:?usage: haproxy.sh N [INTER_MS]}
INTER=${2:-1000}
BIN=${BIN:-$(cd "$(dirname "$0")/../../.." && pwd)/bin}
command -v haproxy >/dev/null || { echo "haproxy.sh: haproxy not installed (apt-get install haproxy)" >&2; exit 2; }
dir=$(mktemp -d)
ns=hm-anchor-$$
ip netns add "$ns"
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; ip netns del "$ns"; rm -rf "$dir"; }
trap cleanup EXIT
ip netns exec "$ns" ip link set lo up

cfg=$dir/haproxy.cfg
cat > "$cfg" <<C
global
  maxconn 2000
  stats socket $dir/stats.sock mode 600 level admin
defaults
  mode tcp
  timeout connect $((INTER / 2))ms
  timeout client 5s
  timeout server 5s
backend b
  default-server check inter ${INTER}
C
args=()
for h in $(seq 1 $((N / 1000))); do
  args+=(-tcp-range "127.0.1.$h:20000-20999")
  for p in $(seq 20000 20999); do echo "  server s${h}_$p 127.0.1.$h:$p"; done >> "$cfg"
done
printf 'frontend f\n  bind 127.0.0.1:1\n  default_backend b\n' >> "$cfg"

ulimit -n 20000
ip netns exec "$ns" "$BIN/demo-backends" -log-level warn "${args[@]}" > "$dir/backends.out" 2>&1 &
bpid=$!
for _ in $(seq 300); do grep -q ready "$dir/backends.out" && break; sleep 0.1; done
ip netns exec "$ns" haproxy -f "$cfg" > "$dir/haproxy.log" 2>&1 &
hpid=$!
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
sleep 10
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15, $15}' "/proc/$1/stat"; }
read -r h0 s0 < <(cpu $hpid); read -r b0 _ < <(cpu $bpid); t0=$(date +%s.%N)
sleep 30
read -r h1 s1 < <(cpu $hpid); read -r b1 _ < <(cpu $bpid); t1=$(date +%s.%N)
rss1=$(rss $hpid) # HAProxy allocates its servers at start: its whole RSS is per backend
up=$(echo "show stat" | socat - "UNIX-CONNECT:$dir/stats.sock" | grep -c ',L4OK,' || true)
awk -v n="$N" -v inter="$INTER" -v t0="$t0" -v t1="$t1" -v h="$((h1 - h0))" -v s="$((s1 - s0))" -v b="$((b1 - b0))" \
  -v tick="$tick" -v r1="$rss1" -v up="$up" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
  checks = n * (t1 - t0) * 1000 / inter
  printf "haproxy %s: %d backends every %d ms, %d up, load1 %s: %.4f CPU-s per 1,000 checks (kernel %.4f), %.2f KiB RSS per backend (%d KiB in all), backends %.4f CPU-s per 1,000\n",
    "'"$(haproxy -v | head -1 | awk '{print $3}')"'", n, inter, up, load, h / tick / checks * 1000, s / tick / checks * 1000, r1 / n, r1, b / tick / checks * 1000
}'
