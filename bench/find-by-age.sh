#!/usr/bin/env bash
# The seed's pool experiment, on one machine: a throwaway PostgreSQL 15
# cluster seeded with 100,000 people, mandelweb in front of it with
# --pool-size 0 (a new connection per request) and with a pool, and
# `hammer attack` at fixed rates with the seed's no-match body
# ({"age": 300}). Prints p99 and achieved rate per step, side by side.
#
#   bench/find-by-age.sh [POOL_SIZE] [RATES...]
#   e.g. bench/find-by-age.sh 16 1000 3000 6000 9000 12000 (the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${1:-16}; shift || true
RATES=${*:-"1000 3000 6000 9000 10500 12000"}
NORATES=${NORATES-"100 200 300 400 600"}
STEP=${STEP:-10s}
SVC_FLAGS=${SVC_FLAGS:-}
cargo build -q --release -p hammer -p mandelweb
bin=target/release

work=$(mktemp -d /tmp/hammer-bench-XXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$work"; as_pg=(runuser -u postgres --); fi
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cleanup() {
  kill "${svc:-0}" 2>/dev/null || true
  "${as_pg[@]}" pg_ctl -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"${as_pg[@]}" initdb -D "$work/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
"${as_pg[@]}" pg_ctl -D "$work/data" -l "$work/pg.log" -w \
  -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work -c max_connections=300" start >/dev/null
url="postgres://postgres@127.0.0.1:$port/postgres"
$bin/mandelweb seed-db --rows 100000 --database-url "$url"
echo '{"age": 300}' > "$work/body.json"

run() { # pool-size, rates
  local pool=$1; shift
  $bin/mandelweb --listen 127.0.0.1:0 --database-url "$url" --pool-size "$pool" \
    --pool-min-idle "$pool" $SVC_FLAGS >"$work/addr" 2>"$work/svc.log" &
  svc=$!
  for _ in $(seq 50); do [ -s "$work/addr" ] && break; sleep 0.1; done
  local target; target=$(head -1 "$work/addr" | awk '{print $3}')find-by-age
  for rate in "$@"; do
    $bin/hammer attack "$target" -m POST -H 'Content-Type: application/json' \
      -b "$work/body.json" --rate "$rate" --duration "$STEP" --format json -q \
      > "$work/r.json" || true
    python3 - "$pool" "$rate" "$work/r.json" <<'PY'
import json, sys
pool, rate, path = sys.argv[1:]
r = json.load(open(path))
lat = r["latency_ms"]
ok = "pass" if lat["p99"] < 60 and r["failed"] == 0 else "FAIL"
print(f"pool {pool:>3}  offered {float(rate):>7.0f}/s  achieved {r['achieved_rate']:>8.1f}/s  "
      f"p50 {lat['p50']:>7.2f} ms  p99 {lat['p99']:>8.2f} ms  failed {r['failed']:>6}  "
      f"lag p99 {r['schedule_lag_ms']['p99']:.2f} ms  SLO p99<60ms: {ok}")
PY
  done
  kill "$svc"; wait "$svc" 2>/dev/null || true
}
echo "# pool size 0: a new PostgreSQL connection per request"
# shellcheck disable=SC2086
[ -n "$NORATES" ] && run 0 $NORATES
echo "# pool size $POOL, all warm"
# shellcheck disable=SC2086
run "$POOL" $RATES
