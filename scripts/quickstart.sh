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

if [ "$(id -u)" -eq 0 ]; then
  # The server on a free loopback port, driven by the curl example, then stopped (SIGTERM).
  OUT=$(mktemp)
  "$SQRX" serve --listen 127.0.0.1:0 >"$OUT" 2>/dev/null &
  SERVER=$!
  trap 'kill $SERVER 2>/dev/null || true; rm -f "$OUT"; "$SQRX" sandbox rm quickstart >/dev/null 2>&1 || true' EXIT
  for _ in $(seq 600); do grep -q listening "$OUT" && break; sleep 0.1; done
  URL=$(sed -n 's/^sqrx: listening on //p' "$OUT")
  echo "== sqrx serve on $URL"
  SQRX_URL="$URL" SQRX_EXAMPLE_ID=quickstart-http bash examples/curl/session.sh
  kill -TERM "$SERVER" && wait "$SERVER"
fi
