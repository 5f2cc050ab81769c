#!/usr/bin/env bash
# Times the default Mandelweb render (512x512, 1000 iterations) side by side:
# the scalar oracle on one core, the fast renderer on one core and on all
# cores, after checking they are pixel-identical.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p mandelweb --bench render
