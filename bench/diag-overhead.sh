#!/usr/bin/env bash
# Throughput cost of hammer-diag's middleware: the same /hello handler served
# by bare `axum::serve` and by hammer-diag (request logs off with
# RUST_LOG=warn; the same with the clients sending an x-request-id that
# hammer-diag echoes, which is what a request ID costs apart from its log
# line; the same while a 99 Hz CPU profile runs; request logs on at info,
# written to a file).
#
# Side by side, at the same time: each round starts bare axum and one
# hammer-diag variant together, both pinned to core 0, and loads each with
# its own `hammer attack` closed loop (50 connections) pinned to core 1, for
# DURATION seconds. The two servers share one core and one machine state, so
# their ratio holds even when the machine's own speed moves (on these VMs a
# server alone flips between runs by 15% in system time per request). REPEAT
# rounds; prints median ratios of requests/s and of the servers' CPU time
# per request. ROWS (space-separated row names) runs some rows only;
# LOG_TO=/dev/null sends hammer-diag's log there instead of a file (what
# the lines cost without the file system's share).
#
# Then, unless NOINSTR is set, the servers' user-space instructions per
# request counted by callgrind: the same figures on every run, also for bare
# axum with a do-nothing `Router::layer`, which is what axum's per-route
# layering costs any middleware that labels requests by route.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-6}
REPEAT=${REPEAT:-5}
cargo build --release -q -p hammer -p hammer-diag --example bench_server
HAMMER=$PWD/target/release/hammer
SERVER=$PWD/target/release/examples/bench_server
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system time

wait_up() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/hello" >/dev/null && return; sleep 0.05; done; }

pair() { # NAME RUST_LOG [profile] [LOG_FORMAT LOG_REQUESTS] [ID]: bare axum and hammer-diag, loaded at once; ID: clients send x-request-id
  local p1 p2 d2 a b
  p1=$(free_port); p2=$(free_port); d2=$(free_port)
  RUST_LOG=warn taskset -c 0 "$SERVER" plain "127.0.0.1:$p1" 2>> "$work/server.log" &
  a=$!
  LOG_FORMAT=${4:-text} LOG_REQUESTS=${5:-end} RUST_LOG=$2 taskset -c 0 "$SERVER" diag "127.0.0.1:$p2" "127.0.0.1:$d2" 2>> "${LOG_TO:-$work/server.log}" &
  b=$!
  wait_up "$p1"; wait_up "$p2"
  if [ "${3:-}" = profile ]; then
    curl -sf -o "$work/cpu.pb.gz" "http://127.0.0.1:$d2/debug/pprof/profile?seconds=$((DURATION + 1))&hz=99" &
    sleep 0.5
  fi
  local a0 b0
  a0=$(cpu_ticks "$a"); b0=$(cpu_ticks "$b")
  local id=()
  [ -n "${6:-}" ] && id=(-H "x-request-id: 0123456789abcdef")
  taskset -c 1 "$HAMMER" attack -q --format json -c 50 -d "${DURATION}s" "${id[@]}" "http://127.0.0.1:$p1/hello" > "$work/a.json" &
  local load=$!
  taskset -c 1 "$HAMMER" attack -q --format json -c 50 -d "${DURATION}s" "${id[@]}" "http://127.0.0.1:$p2/hello" > "$work/b.json"
  wait "$load"
  local a1 b1
  a1=$(cpu_ticks "$a"); b1=$(cpu_ticks "$b")
  kill "$a" "$b"; wait "$a" "$b" 2>/dev/null || true
  wait # the profile download, if any
  python3 - "$1" "$work" "$((a1 - a0))" "$((b1 - b0))" >> "$work/pairs" <<'PY'
import json, os, sys
name, work, ta, tb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
a, b = (json.load(open(f"{work}/{x}.json")) for x in "ab")
us = lambda ticks, v: ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(v["requests"], 1)
print(name, a["achieved_rate"], b["achieved_rate"], us(ta, a), us(tb, b), a["failed"] + b["failed"])
PY
}

ROWS=${ROWS:-diag-nolog diag-echo diag-profiled diag-log diag-json diag-both}
row() { [[ " $ROWS " == *" $1 "* ]] && pair "$@"; return 0; }
for _ in $(seq "$REPEAT"); do
  row diag-nolog warn
  row diag-echo warn "" text end id
  row diag-profiled warn profile
  row diag-log info "" text end
  row diag-json info "" json end
  row diag-both info "" text both
done
python3 - "$work/pairs" "$DURATION" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, ra, rb, ca, cb, failed = line.split()
    rows.setdefault(name, []).append((float(ra), float(rb), float(ca), float(cb), int(failed)))
labels = {"diag-nolog": "hammer-diag, RUST_LOG=warn",
          "diag-echo": "RUST_LOG=warn, client's ID echoed",
          "diag-profiled": "hammer-diag, during 99 Hz profile",
          "diag-log": "request logs on (end line)",
          "diag-json": "request logs on, JSON",
          "diag-both": "request logs on, start and end"}
print(f"each row: bare axum and hammer-diag served at once on one core, {sys.argv[2]} s, "
      f"medians of {len(next(iter(rows.values())))} rounds")
print(f"{'hammer-diag':<34} {'req/s':>15} {'vs axum':>8} {'CPU us/req':>13} {'vs axum':>8} {'failed':>6}")
for name, label in labels.items():
    if name not in rows:
        continue
    r = rows[name]
    med = lambda i: statistics.median(x[i] for x in r)
    rate = statistics.median(x[1] / x[0] - 1 for x in r) * 100
    cpu = statistics.median(x[3] / x[2] - 1 for x in r) * 100
    spread = (min(x[1] / x[0] - 1 for x in r) * 100, max(x[1] / x[0] - 1 for x in r) * 100)
    print(f"{label:<34} {med(1):>6.0f} ({med(0):>6.0f}) {rate:>+7.1f}% {med(3):>5.2f} ({med(2):>5.2f}) "
          f"{cpu:>+7.1f}% {sum(x[4] for x in r):>6}   req/s ratio ranged {spread[0]:+.1f}%..{spread[1]:+.1f}%")
print("(bare axum's own figures in brackets)")
PY

[ -n "${NOINSTR:-}" ] && exit 0
command -v callgrind_control >/dev/null || { echo "no valgrind: instruction counts skipped"; exit 0; }
# User-space instructions per request over 5,000 requests after a
# 1,000-request warm-up (both servers make the same two system calls per
# request, a recvfrom and a writev).
instructions() { # MODE
  local port out pid ir
  port=$(free_port); out="$work/callgrind.$1"
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" "$SERVER" "$1" "127.0.0.1:$port" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/hello" >/dev/null && break; sleep 0.1; done
  "$HAMMER" attack -q -c 10 -n 1000 -d 60s "http://127.0.0.1:$port/hello" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$HAMMER" attack -q --format json -c 10 -n 5000 -d 120s "http://127.0.0.1:$port/hello" > "$work/out.json"
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 0.5
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  ir=$(grep -h '^summary:' "$out".* | tail -1 | awk '{print $2}')
  python3 -c "import json; v=json.load(open('$work/out.json')); print('$1', round($ir / v['requests']))" >> "$work/instructions"
}
instructions plain
instructions layered
instructions diag
python3 - "$work/instructions" <<'PY'
import sys
ir = {k: int(v) for k, v in (line.split() for line in open(sys.argv[1]))}
plain = ir["plain"]
print("\nuser-space instructions per request (callgrind, RUST_LOG=warn):")
for name, label in [("plain", "bare axum"), ("layered", "bare axum + a do-nothing Router::layer"),
                    ("diag", "hammer-diag")]:
    n = ir[name]
    print(f"  {label:<40} {n:>7,} {(n / plain - 1) * 100:>+6.1f}%")
PY
