#!/usr/bin/env bash
# What --metrics-listen costs hammer: closed loop at full speed against one
# nginx worker (nginx on core 0, hammer on core 1), REPEAT interleaved
# rounds of four runs each:
#   off      no --metrics-listen (the same scraper knocks on a closed port)
#   1/s      --metrics-listen, scraped once a second (what deploy/ does)
#   10/s     scraped 10 times a second
#   100/s    scraped 100 times a second (an upper bound: the scraper itself,
#            on nginx's core, then costs nginx, and so the throughput, too)
# Rounds rotate the order. Prints each run's requests/s and each variant's
# median beside "off".
# The target is < 1% at 1 scrape/s; this machine's noise between two "off"
# runs is shown as the spread of the off column.
#
# Usage: bench/metrics-overhead.sh   (DURATION=10 REPEAT=5 CONNS=50)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-5}
CONNS=${CONNS:-50}
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
cargo build --release -q -p hammer
HAMMER=$PWD/target/release/hammer

. bench/nginx.sh

# The scraper: GET /metrics on PORT every EVERY seconds until the file
# $work/stop appears; prints how many scrapes answered 200 and their size.
cat > "$work/scraper.py" <<'PY'
import os, socket, sys, time
port, every, stop = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
n, size = 0, 0
while not os.path.exists(stop):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = b""
        while chunk := s.recv(65536):
            body += chunk
        s.close()
        if b" 200 OK" in body[:20]:
            n, size = n + 1, len(body)
    except OSError:
        pass
    time.sleep(every)
print(n, size)
PY

# run NAME FLAG EVERY: one run. FLAG: whether hammer gets --metrics-listen;
# EVERY: the scrape period. Every run has the same scraper process, started
# before hammer (its start-up costs core 0, nginx's, and must not count):
# without the flag it knocks on a closed port.
run() {
  local name=$1 flag=$2 every=$3 flags=()
  local mport; mport=$(free_port)
  [ "$flag" = yes ] && flags=(--metrics-listen "127.0.0.1:$mport" --metrics-linger 0s)
  rm -f "$work/stop"
  # On core 0, beside nginx: a Prometheus elsewhere would not take hammer's core.
  taskset -c 0 python3 "$work/scraper.py" "$mport" "$every" "$work/stop" > "$work/scrapes" &
  local scraper=$!
  sleep 0.5
  taskset -c 1 "$HAMMER" attack -q --format json -c "$CONNS" -d "${DURATION}s" "${flags[@]}" "$url" > "$work/out"
  touch "$work/stop"
  wait "$scraper"
  python3 - "$name" "$work/out" "$(cat "$work/scrapes")" >> "$work/results" <<'PY'
import json, sys
v = json.load(open(sys.argv[2]))
print(sys.argv[1], v["achieved_rate"], sys.argv[3])
PY
}

echo "closed loop, $CONNS connections, ${DURATION}s per run, $REPEAT rounds; nginx on core 0, hammer on core 1"
variants=("off|no|1" "1/s|yes|1" "10/s|yes|0.1" "100/s|yes|0.01")
for round in $(seq "$REPEAT"); do
  # Each round starts with the next variant: no variant always runs first.
  for k in 0 1 2 3; do
    IFS='|' read -r name flag every <<< "${variants[$(( (round + k) % 4 ))]}"
    run "$name" "$flag" "$every"
  done
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for name, rate, n, size in rows:
    by.setdefault(name, []).append((float(rate), n, size))
    print(f"  {name:6} {float(rate):>10,.0f} req/s   scrapes {n:>5}  ({size} bytes each)")
off = statistics.median(r for r, _, _ in by["off"])
lo, hi = min(r for r, _, _ in by["off"]), max(r for r, _, _ in by["off"])
print(f"\nmedian off   {off:,.0f} req/s (runs {lo:,.0f}..{hi:,.0f}: {100*(hi-lo)/off:.1f}% spread)")
for name in ("1/s", "10/s", "100/s"):
    m = statistics.median(r for r, _, _ in by[name])
    print(f"median {name:5} {m:,.0f} req/s  {100*(m-off)/off:+.2f}% vs off")
PY
