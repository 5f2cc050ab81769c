#!/usr/bin/env bash
# hammer's own memory stays flat however long it runs: peak RSS (from
# /usr/bin/time) of `hammer attack -c 50 -n N` for N = 10,000, 1,000,000 and
# 10,000,000 against one nginx worker (nginx on core 0, hammer on core 1),
# closed loop and open loop (-r RATE). Every figure goes into fixed-size
# HDR histograms, so the peak should not grow with N (target: within 10%).
#
# Usage: bench/hammer-rss.sh   (RATE=100000; the 10M open-loop run takes 100 s)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-100000}
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p hammer
HAMMER=$PWD/target/release/hammer
. bench/nginx.sh

printf "%-6s %12s %14s %12s %10s\n" mode requests answered "peak RSS" "vs 10k"
for mode in closed open; do
  base=
  for n in 10000 1000000 10000000; do
    flags=(-c 50)
    [ "$mode" = open ] && flags=(-r "$RATE")
    /usr/bin/time -f "%M" -o "$work/rss" taskset -c 1 "$HAMMER" attack -q --format json "${flags[@]}" -n "$n" "$url" > "$work/out"
    rss=$(cat "$work/rss")
    answered=$(python3 -c "import json; print(json.load(open('$work/out'))['succeeded'])")
    base=${base:-$rss}
    python3 -c "print(f'{\"$mode\":6} {$n:>12,} {$answered:>14,} {$rss/1024:>8.1f} MiB {100*($rss-$base)/$base:>+9.1f}%')"
  done
done
