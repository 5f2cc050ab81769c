#!/usr/bin/env bash
# The SRE seed's stack on this machine, from what it has installed:
# PostgreSQL (initdb/pg_ctl, a throwaway cluster), mandelweb (hammer's
# built-in target, pooled, with its diagnostics listener), Prometheus with
# deploy/prometheus, and node_exporter and Grafana when present. Everything
# listens on 127.0.0.1; Ctrl-C stops it all and removes the data.
#
#   deploy/stack.sh            # then, in another shell:
#   hammer attack --schedule 200:60s,400:60s,800:60s --metrics-listen 127.0.0.1:9099 \
#       -m POST -H 'Content-Type: application/json' -b <(echo '{"age": 300}') \
#       http://127.0.0.1:8080/find-by-age
#
# Ports: mandelweb 8080 (diagnostics 6060), PostgreSQL 5432, Prometheus
# 9090, Grafana 3000 (admin/admin), node_exporter 9100; hammer is expected
# on 9099. docker-compose.yml starts the same with containers.
#
# PostgreSQL refuses to run as root: as root (a container's default) the
# cluster belongs to, and runs as, the `postgres` OS user (or PG_USER).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hammer=${HAMMER:-$(command -v hammer || echo "$here/../target/release/hammer")}
[ -x "$hammer" ] || { echo "no hammer: cargo build --release, or set HAMMER" >&2; exit 2; }
data=$(mktemp -d)
pids=()
# PostgreSQL's tools, as an unprivileged user when this runs as root.
pg() { "$@"; }
if [ "$(id -u)" = 0 ] && command -v initdb >/dev/null; then
  pg_user=${PG_USER:-postgres}
  id -u "$pg_user" >/dev/null 2>&1 || {
    echo "running as root: PostgreSQL needs an unprivileged OS user; create '$pg_user' (useradd -r $pg_user) or set PG_USER" >&2
    rm -rf "$data"; exit 2
  }
  chown "$pg_user" "$data"
  pg() { runuser -u "$pg_user" -- "$@"; }
fi
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$data/pg/postmaster.pid" ] && pg pg_ctl -D "$data/pg" -m fast -w stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap stop EXIT
trap 'exit 130' INT TERM

db_flags=()
if command -v initdb >/dev/null; then
  pg initdb -D "$data/pg" -U postgres -A trust >/dev/null
  pg pg_ctl -D "$data/pg" -o "-k $data -c listen_addresses=127.0.0.1 -p 5432 -c max_connections=200" \
    -l "$data/pg.log" -w start >/dev/null
  url=postgres://postgres@127.0.0.1:5432/postgres
  "$hammer" mandelweb seed-db --rows 100000 --database-url "$url"
  db_flags=(--database-url "$url" --pool-size 16)
  echo "PostgreSQL   127.0.0.1:5432"
else
  echo "no initdb: mandelweb runs without /find-by-age" >&2
fi

"$hammer" mandelweb --listen 127.0.0.1:8080 --diag-listen 127.0.0.1:6060 "${db_flags[@]}" \
  > "$data/mandelweb.log" 2>&1 &
pids+=($!)
echo "mandelweb    http://127.0.0.1:8080/  (metrics http://127.0.0.1:6060/metrics)"

if command -v prometheus >/dev/null; then
  prometheus --config.file="$here/prometheus/prometheus.yml" --storage.tsdb.path="$data/prom" \
    --web.listen-address=127.0.0.1:9090 > "$data/prometheus.log" 2>&1 &
  pids+=($!)
  echo "Prometheus   http://127.0.0.1:9090/"
else
  echo "no prometheus: nothing scrapes mandelweb (apt-get install prometheus)" >&2
fi

for exporter in prometheus-node-exporter node_exporter; do
  if command -v "$exporter" >/dev/null; then
    "$exporter" --web.listen-address=127.0.0.1:9100 > "$data/node.log" 2>&1 &
    pids+=($!)
    echo "node_exporter 127.0.0.1:9100"
    break
  fi
done

if command -v grafana-server >/dev/null; then
  home=${GRAFANA_HOME:-/usr/share/grafana}
  GF_PATHS_DATA="$data/grafana" GF_PATHS_PROVISIONING="$here/grafana/provisioning" \
    HAMMER_DASHBOARDS="$here/grafana" GF_SERVER_HTTP_ADDR=127.0.0.1 \
    grafana-server --homepath "$home" > "$data/grafana.log" 2>&1 &
  pids+=($!)
  echo "Grafana      http://127.0.0.1:3000/d/hammer-seed  (admin/admin)"
fi
echo "logs in $data; Ctrl-C stops everything"
wait
