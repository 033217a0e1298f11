#!/usr/bin/env bash
# The main job on a fresh machine: build sqrx, make the default base layer from the host's own
# programs (offline), show it, verify it and, as root, run a shell inside it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release -p sqrx-server
SQRX="${CARGO_TARGET_DIR:-target}/release/sqrx"
export SQRX_DATA="${SQRX_DATA:-$(pwd)/.sqrx-data}"

"$SQRX" layer bootstrap || echo "(000-base already exists)"
"$SQRX" layer ls
"$SQRX" layer inspect 000-base
"$SQRX" layer verify 000-base
if [ "$(id -u)" -eq 0 ]; then
  # A sandbox on the base layer: namespaces, overlay root, cgroup limits.
  "$SQRX" sandbox rm quickstart >/dev/null 2>&1 || true
  trap '"$SQRX" sandbox rm quickstart >/dev/null 2>&1 || true' EXIT
  "$SQRX" sandbox create quickstart --memory-mb 256 --cpu 1 --pids 256
  "$SQRX" sandbox exec quickstart -- 'echo "hello from $(hostname): $(uname -sm)"; ps; ls /'
  "$SQRX" sandbox exec quickstart --timeout 1 -- 'sleep 30' || echo "timed out as asked (exit $?)"
  "$SQRX" sandbox logs quickstart
fi
"$SQRX" js eval 'const xs = [1, 2, 3]; console.log("from QuickJS"); xs.map(x => x * input.k)' --input '{"k": 2}'
