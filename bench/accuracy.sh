#!/usr/bin/env bash
# hammer's latency against the truth when the target pauses (see
# bench/accuracy.py): rates x pause patterns x arrivals, the truth (the
# server's own residence with one connection per request, or the analytic
# answer), hammer with default flags and oha --latency-correction, p99 and
# p99.9, median of three rounds.
#
#   bench/accuracy.sh [--rates 1000 4000 16000] [--duration 8] [--rounds 3]
# Installs oha with cargo if missing. On a machine without cargo, put
# hammer, pause-server and oha on PATH first (../shared/tools/devkit.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v cargo >/dev/null; then
  command -v oha >/dev/null || cargo install oha --locked
  cargo build --release -q -p hammer -p testkit --bin hammer --bin pause-server
  export PATH=$PWD/target/release:$PATH
fi
exec python3 bench/accuracy.py "$@"
