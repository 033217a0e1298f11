#!/usr/bin/env bash
# Benchmark: create + first command through the E2B Python SDK against sqrx serve, and through
# sqrx's own Python binding, in one run (as root).
#
#   bash benches/e2b/run.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
bash scripts/deps.sh
cargo build --release -p sqrx-server -p sqrx-core --bin sqrx --bin sqrx-init
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
VENV=$(mktemp -d /tmp/sqrx-bench-e2b-venv-XXXXXX)
DATA=$(mktemp -d /tmp/sqrx-bench-e2b-data-XXXXXX)
PORT=18431
TOKEN="e2b_$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  for d in "$DATA" /tmp/sqrx-bench-e2b-binding-*; do
    [ -d "$d" ] || continue
    for id in $(SQRX_DATA="$d" "$TARGET/sqrx" sandbox ls --json 2>/dev/null | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)))'); do
      SQRX_DATA="$d" "$TARGET/sqrx" sandbox rm "$id" >/dev/null 2>&1 || true
    done
    rm -rf "$d"
  done
  rm -rf "$VENV"
}
trap cleanup EXIT
/usr/bin/python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r crates/sqrx-server/tests/e2b/python/requirements.txt ./crates/sqrx-py
SQRX_DATA="$DATA" "$TARGET/sqrx" serve --listen "127.0.0.1:$PORT" --auth-token "$TOKEN" > "$DATA.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v1/health" >/dev/null && break; sleep 0.2; done
E2B_API_URL="http://127.0.0.1:$PORT" E2B_SANDBOX_URL="http://127.0.0.1:$PORT" E2B_API_KEY="$TOKEN" \
  SQRX_INIT="$TARGET/sqrx-init" "$VENV/bin/python" benches/e2b/bench.py "${1:-50}"
