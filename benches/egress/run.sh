#!/usr/bin/env bash
# Runs the egress benchmark as root: HTTPS requests from inside a sandbox with one header
# substitution through sqrx's egress proxy, against the same requests sent directly.
#
#   bash benches/egress/run.sh [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/deps.sh
cargo build --release -p egress_bench -p sqrx-core --bin egress --bin sqrx-init
exec "${CARGO_TARGET_DIR:-target}/release/egress" "$@"
