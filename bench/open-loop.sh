#!/usr/bin/env bash
# The open loop at full speed, on one core: nginx with one worker (return
# 200) pinned to core 0; hammer with default flags, hammer -c 50, and oha
# -q R -c 50 --latency-correction, each pinned to core 1 with one thread.
# For each, bisects the highest rate it sustains with latency p99 < 2 ms and
# achieved within 0.5%, ROUNDS times interleaved (the VM's noise moves every
# figure; compare them within one run), and prints the median with hammer's
# schedule lag p99 and the connections it opened there.
#
#   bench/open-loop.sh [--duration 4] [--rounds 3] [--low 10000] [--high 160000]
# Installs nginx-light and wrk with apt-get, oha with cargo, if missing. On a
# machine without cargo, put the binaries on PATH first (../shared/tools/devkit.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v cargo >/dev/null; then
  command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
  command -v oha >/dev/null || cargo install oha --locked
  cargo build --release -q -p hammer
  export PATH=$PWD/target/release:$PATH
fi
exec python3 bench/peers.py open-loop "$@"
