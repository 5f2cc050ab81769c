#!/usr/bin/env bash
# Throughput cost of hammer-diag's middleware, side by side in one run: the
# same /hello handler served by bare axum and by hammer-diag (request logs
# off with RUST_LOG=warn; the same while a 99 Hz CPU profile runs; request
# logs on at info, written to a file), server pinned
# to core 0, `hammer attack` closed loop (50 connections) pinned to core 1,
# DURATION seconds each, REPEAT interleaved rounds; prints median req/s and
# the server's CPU time per request.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
cargo build --release -q -p hammer -p hammer-diag --example bench_server
HAMMER=$PWD/target/release/hammer
SERVER=$PWD/target/release/examples/bench_server
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

run() { # NAME MODE RUST_LOG [profile]
  local port dport
  port=$(free_port); dport=$(free_port)
  RUST_LOG=$3 taskset -c 0 "$SERVER" "$2" "127.0.0.1:$port" "127.0.0.1:$dport" 2> "$work/server.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/hello" >/dev/null && break; sleep 0.05; done
  if [ "${4:-}" = profile ]; then
    curl -sf -o "$work/cpu.pb.gz" "http://127.0.0.1:$dport/debug/pprof/profile?seconds=$((DURATION + 1))&hz=99" &
    sleep 0.5
  fi
  local before after
  before=$(cpu_ticks "$pid")
  taskset -c 1 "$HAMMER" attack -q --format json -c 50 -d "${DURATION}s" "http://127.0.0.1:$port/hello" > "$work/out.json"
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 -c "import json,os; v=json.load(open('$work/out.json')); print('$1', v['achieved_rate'], v['failed'], ($after - $before) / os.sysconf('SC_CLK_TCK') * 1e6 / max(v['requests'], 1))" >> "$work/results"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # the server's user + system time

# The server's own instructions per request, counted by callgrind over 5,000
# requests after a 1,000-request warm-up: the same figure on every run,
# however busy the machine (user space only; both servers make the same two
# system calls per request, a recvfrom and a writev).
instructions() { # MODE
  local port out pid
  port=$(free_port); out="$work/callgrind.$1"
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" "$SERVER" "$1" "127.0.0.1:$port" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/hello" >/dev/null && break; sleep 0.1; done
  "$HAMMER" attack -q -c 10 -n 1000 -d 60s "http://127.0.0.1:$port/hello" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  "$HAMMER" attack -q --format json -c 10 -n 5000 -d 120s "http://127.0.0.1:$port/hello" > "$work/out.json"
  callgrind_control -d "$pid" >/dev/null
  sleep 0.5
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  local ir
  ir=$(grep -h '^summary:' "$out".* | tail -1 | awk '{print $2}')
  python3 -c "import json; v=json.load(open('$work/out.json')); print('$1', round($ir / v['requests']))" >> "$work/instructions"
}
if command -v callgrind_control >/dev/null; then
  instructions plain
  instructions diag
fi

for _ in $(seq "$REPEAT"); do
  run plain plain warn
  run diag-nolog diag warn
  run diag-profiled diag warn profile
  run diag-log diag info
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rate, failed, cpu = line.split()
    rows.setdefault(name, []).append((float(rate), int(failed), float(cpu)))
base = statistics.median(r for r, _, _ in rows["plain"])
base_cpu = statistics.median(c for _, _, c in rows["plain"])
print(f"{'server':<34} {'req/s':>9} {'vs plain':>9} {'CPU us/req':>11} {'vs plain':>9} {'failed':>7}")
labels = {"plain": "axum, no middleware", "diag-nolog": "hammer-diag, RUST_LOG=warn",
          "diag-profiled": "hammer-diag, during 99 Hz profile", "diag-log": "hammer-diag, request logs on"}
for name in ["plain", "diag-nolog", "diag-profiled", "diag-log"]:
    med = statistics.median(r for r, _, _ in rows[name])
    cpu = statistics.median(c for _, _, c in rows[name])
    print(f"{labels[name]:<34} {med:>9.0f} {(med / base - 1) * 100:>+8.1f}% {cpu:>11.2f} "
          f"{(cpu / base_cpu - 1) * 100:>+8.1f}% {sum(f for _, f, _ in rows[name]):>7}")
print(f"(medians of {len(rows['plain'])} interleaved rounds; req/s is the throughput, CPU us/req "
      "the server's user+system time per request: the steadier figure on a shared machine)")
PY
if [ -s "$work/instructions" ]; then
  python3 - "$work/instructions" <<'PY'
import sys
ir = dict(line.split() for line in open(sys.argv[1]))
plain, diag = int(ir["plain"]), int(ir["diag"])
print(f"\nuser-space instructions per request (callgrind): axum {plain:,}, hammer-diag {diag:,} "
      f"(+{diag - plain:,}, {(diag / plain - 1) * 100:+.1f}% of user space)")
PY
fi
