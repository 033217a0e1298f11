#!/usr/bin/env bash
# Tenant benchmark: what authenticating a user's API key costs, against the operator token, on
# SQLite (the default) and on PostgreSQL (a throwaway cluster, scripts/pg-cluster.sh). For each:
# requests/s and p50/p99 of `GET /api/sandboxes/{name}` (an API call: key lookup, ownership
# check) and of `GET /proxy/{name}/8000/` (a proxied request to busybox httpd inside the
# sandbox), with wrk on loopback, same connections, one run after the other.
#
#   bash benches/tenants/run.sh [DURATION_S] [CONNECTIONS]     (as root; results on stdout)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-10}"
CONNS="${2:-8}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk (scripts/deps.sh)" >&2; exit 1; }

cargo build -q --release -p sqrx-server -p sqrx-core --bins
BIN="${CARGO_TARGET_DIR:-target}/release"
OPERATOR=bench-operator-token
source scripts/pg-cluster.sh
DATA=""
cleanup() {
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  [ -n "$DATA" ] && { "$BIN/sqrx" --data-dir "$DATA" sandbox rm bench >/dev/null 2>&1 || true; rm -rf "$DATA"; }
  pg_cluster_stop
}
trap cleanup EXIT

api() { # method path key [body]
  curl -fsS --noproxy '*' -X "$1" "$URL$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' ${4:+-d "$4"}
}

run() { # label key path
  local line
  line=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $2" -s benches/server/wrk.lua "$URL$3" | grep '^RESULT')
  echo "$BACKEND $1 c=$CONNS ${line#RESULT }"
}

bench_backend() { # name [database-url]
  BACKEND=$1
  DATA=$(mktemp -d /tmp/sqrx-bench-tenants-XXXXXX)
  local out="$DATA/server.out"
  SQRX_LOG=warn "$BIN/sqrx" --data-dir "$DATA" serve --listen 127.0.0.1:0 --auth-token "$OPERATOR" \
    ${2:+--database-url "$2"} >"$out" 2>/dev/null &
  PID=$!
  for _ in $(seq 600); do grep -q listening "$out" && break; sleep 0.1; done
  URL=$(sed -n 's/^sqrx: listening on //p' "$out")
  [ -n "$URL" ] || { echo "the server did not start" >&2; exit 1; }
  local user key
  user=$(api POST /api/admin/users "$OPERATOR" '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  key=$(api POST "/api/admin/users/$user/apikeys" "$OPERATOR" '{}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  api POST /api/sandboxes "$key" '{"id":"bench"}' >/dev/null
  api POST /v1/sandboxes/bench/exec "$key" '{"command":"mkdir -p /tmp/www && echo hi > /tmp/www/index.html && (busybox httpd -p 8000 -h /tmp/www &)"}' >/dev/null
  sleep 0.5
  # Warm up both paths.
  wrk -t1 -c1 -d2s -H "Authorization: Bearer $key" "$URL/proxy/bench/8000/" >/dev/null
  run "GET /api/sandboxes/bench operator" "$OPERATOR" /api/sandboxes/bench
  run "GET /api/sandboxes/bench user-key" "$key" /api/sandboxes/bench
  run "GET /proxy/bench/8000/ operator" "$OPERATOR" /proxy/bench/8000/
  run "GET /proxy/bench/8000/ user-key" "$key" /proxy/bench/8000/
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  "$BIN/sqrx" --data-dir "$DATA" sandbox rm bench >/dev/null 2>&1 || true
  rm -rf "$DATA"; DATA=""
}

echo "machine: $(nproc) cores, $(uname -r); wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'); ${DURATION}s per run"
bench_backend sqlite
bench_backend postgres "$SQRX_TEST_POSTGRES_URL"
