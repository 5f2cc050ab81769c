#!/usr/bin/env bash
# mandelweb's render gate under overload (see bench/shed.py): closed loop
# c = 1..64 retrying at once, open loop at 1x, 2x, 5x capacity; goodput,
# 503s, hammer's p99 and the service's admitted-within-60-ms share.
#
#   bench/shed.sh                                  # this tree's build
#   bench/shed.sh before=/tmp/old-hammer now=target/release/hammer
#   bench/shed.sh -- --render-budget 10s           # the gate off
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v cargo >/dev/null; then
  cargo build --release -q -p hammer --bin hammer
fi
exec python3 bench/shed.py "$@"
