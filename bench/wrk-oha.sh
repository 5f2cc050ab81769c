#!/usr/bin/env bash
# Compares hammer with wrk and oha on one machine, side by side in one run:
# one nginx worker (return 200) pinned to core 0, each generator pinned to
# core 1, closed loop, 50 connections, DURATION seconds each, REPEAT rounds
# interleaved. Prints requests/s, requests per client CPU-second (user+sys
# from /usr/bin/time) and peak RSS; then peak RSS at 1M requests, and
# hammer's open-loop accuracy at 20,000 req/s.
#
# Usage: bench/wrk-oha.sh            (DURATION=10 REPEAT=3 CONNS=50 by default)
# Installs nginx-light, wrk and time with apt-get, oha with cargo, if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
CONNS=${CONNS:-50}
RATE=${RATE:-20000}

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || [ ! -x /usr/bin/time ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk time >/dev/null
fi
command -v oha >/dev/null || cargo install oha --locked
cargo build --release -q -p hammer
HAMMER=$PWD/target/release/hammer

. bench/nginx.sh

# measure NAME CMD...: runs CMD on core 1 under /usr/bin/time; appends
# "NAME requests cpu_seconds peak_rss_kb wall_seconds" to $work/results.
measure() {
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$work/time" taskset -c 1 "$@" > "$work/out" 2>/dev/null
  end=$(date +%s.%N)
  local requests
  requests=$(python3 - "$name" "$work/out" <<'PY'
import json, re, sys
name, path = sys.argv[1], sys.argv[2]
text = open(path).read()
if name.startswith("hammer"):
    print(json.loads(text)["requests"])
elif name.startswith("wrk"):
    print(re.search(r"(\d+) requests in", text).group(1))
else:
    v = json.loads(text)
    print(sum(v["statusCodeDistribution"].values()))
PY
)
  read -r user sys rss < "$work/time"
  echo "$name $requests $(python3 -c "print($user + $sys)") $rss $(python3 -c "print($end - $start)")" >> "$work/results"
}

echo "closed loop, $CONNS connections, ${DURATION}s each, $REPEAT rounds; nginx on core 0, generator on core 1"
for round in $(seq "$REPEAT"); do
  measure hammer "$HAMMER" attack -q --format json -c "$CONNS" -d "${DURATION}s" "$url"
  measure wrk wrk -t1 -c "$CONNS" -d "${DURATION}s" "$url"
  measure oha oha --no-tui --output-format json -c "$CONNS" -z "${DURATION}s" "$url"
done
echo "peak RSS at 1,000,000 requests"
measure hammer-1M "$HAMMER" attack -q --format json -c "$CONNS" -n 1000000 "$url"
measure oha-1M oha --no-tui --output-format json -c "$CONNS" -n 1000000 "$url"

python3 - "$work/results" "$DURATION" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
duration = float(sys.argv[2])
tools = {}
for name, req, cpu, rss, wall in rows:
    tools.setdefault(name, []).append((int(req), float(cpu), int(rss), float(wall)))
print(f"\n{'tool':<10} {'runs':>4} {'req/s':>10} {'req/CPU-s':>11} {'CPU-s':>7} {'peak RSS':>10}")
eff = {}
for name, runs in tools.items():
    rate = statistics.median(r / w for r, _, _, w in runs) if name.endswith("1M") else statistics.median(r / duration for r, _, _, _ in runs)
    e = statistics.median(r / c for r, c, _, _ in runs)
    eff[name] = e
    print(f"{name:<10} {len(runs):>4} {rate:>10.0f} {e:>11.0f} {statistics.median(c for _, c, _, _ in runs):>7.2f} {max(m for _, _, m, _ in runs)/1024:>8.1f}MB")
if {"hammer", "wrk", "oha"} <= eff.keys():
    print(f"\nrequests per client CPU-second: hammer/wrk = {eff['hammer']/eff['wrk']:.2f}x, hammer/oha = {eff['hammer']/eff['oha']:.2f}x")
PY

echo
echo "open loop accuracy: hammer at $RATE req/s for ${DURATION}s (generator on core 1)"
taskset -c 1 "$HAMMER" attack -q --format json -r "$RATE" -d "${DURATION}s" "$url" > "$work/open.json"
python3 - "$work/open.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
t, a = v["target_rate"], v["achieved_rate"]
print(f"target {t:.0f}/s, achieved {a:.1f}/s ({(a / t - 1) * 100:+.3f}%), "
      f"schedule lag p99 {v['schedule_lag_ms']['p99']:.3f} ms, "
      f"latency p99 {v['latency_ms']['p99']:.3f} ms, failed {v['failed']}")
PY
