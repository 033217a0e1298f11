#!/usr/bin/env bash
# Benchmark of the web console (as root): time from clicking "Create" in headless Chromium to
# a shell prompt in the page's terminal, p50 and p90 over ROUNDS (default 20), against the
# same create + pty + first prompt by a plain WebSocket client in the same run; and the page
# weight of a first load (compressed and uncompressed).
#
#   bash benches/ui/run.sh [ROUNDS]
#   SQRX_BENCH_PROFILE=debug bash benches/ui/run.sh    # the dev build instead of release
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
bash scripts/deps.sh
PROFILE="${SQRX_BENCH_PROFILE:-release}"
if [ "$PROFILE" = release ]; then
  cargo build --release -p sqrx-server -p sqrx-core --bin sqrx --bin sqrx-init
else
  cargo build -p sqrx-server -p sqrx-core --bin sqrx --bin sqrx-init
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
VENV=$(mktemp -d /tmp/sqrx-bench-ui-venv-XXXXXX)
DATA=$(mktemp -d /tmp/sqrx-bench-ui-data-XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  for id in $(SQRX_DATA="$DATA" "$TARGET/sqrx" sandbox ls --json 2>/dev/null | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)))'); do
    SQRX_DATA="$DATA" "$TARGET/sqrx" sandbox rm "$id" >/dev/null 2>&1 || true
  done
  rm -rf "$DATA" "$DATA.log" "$VENV"
}
trap cleanup EXIT
/usr/bin/python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r crates/sqrx-server/tests/ui/requirements.txt
SQRX_DATA="$DATA" "$TARGET/sqrx" serve --listen "127.0.0.1:$PORT" --auth-token "$TOKEN" > "$DATA.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v1/health" >/dev/null && break; sleep 0.2; done
echo "sqrx $PROFILE build, $(nproc) cores, $(/usr/bin/chromium --version 2>/dev/null | head -1)"
"$VENV/bin/python" benches/ui/bench.py "http://127.0.0.1:$PORT" "$TOKEN" "${1:-20}"
