#!/usr/bin/env bash
# Scaling with threads: nginx with W workers (half the machine's cores,
# pinned to cores 0..W-1), and hammer, wrk and oha with 1, 2, 4, ... threads
# up to W on the other cores, 50 connections per thread. For each thread
# count: closed loop req/s, requests per client CPU-second and peak RSS of
# each generator side by side; then hammer's open loop (default flags) at
# half and 80% of its closed-loop rate and at 100,000/s per thread, with
# latency p99, schedule lag p99 and connections (ok: achieved within 0.5%
# and lag p99 < 1 ms). `--oha-open` adds oha -q at the same rates.
#
#   bench/scale.sh [--duration 5] [--fractions 0.5 0.8] [--oha-open]
# Meant for a machine with many cores; on a machine without cargo, put the
# binaries on PATH first (../shared/tools/devkit.sh packs them).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v cargo >/dev/null; then
  if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
  fi
  command -v oha >/dev/null || cargo install oha --locked
  cargo build --release -q -p hammer
  export PATH=$PWD/target/release:$PATH
fi
exec python3 bench/peers.py scale "$@"
