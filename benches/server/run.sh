#!/usr/bin/env bash
# Server benchmark: requests/s and latency percentiles for GET /v1/health and for an exec of
# `true` (POST /v1/sandboxes/{id}/exec) with wrk on loopback, and the same exec through the
# CLI (`sqrx sandbox exec ID -- true`, a new process per exec) for comparison.
#
#   bash benches/server/run.sh [DURATION_S] [CLI_RUNS]        (as root; results on stdout)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-10}"
CLI_RUNS="${2:-200}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk (scripts/deps.sh)" >&2; exit 1; }

cargo build -q --release -p sqrx-server -p sqrx-core --bins
BIN="${CARGO_TARGET_DIR:-target}/release"
DATA=$(mktemp -d /tmp/sqrx-bench-server-XXXXXX)
OUT=$(mktemp)
cleanup() {
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  "$BIN/sqrx" --data-dir "$DATA" sandbox rm bench >/dev/null 2>&1 || true
  rm -rf "$DATA" "$OUT"
}
trap cleanup EXIT

SQRX_LOG=warn "$BIN/sqrx-server" --data-dir "$DATA" --listen 127.0.0.1:0 >"$OUT" 2>/dev/null &
PID=$!
for _ in $(seq 600); do grep -q listening "$OUT" && break; sleep 0.1; done
URL=$(sed -n 's/^sqrx: listening on //p' "$OUT")
[ -n "$URL" ] || { echo "the server did not start" >&2; exit 1; }
curl -fsS --noproxy '*' -X POST "$URL/v1/sandboxes" -H 'Content-Type: application/json' -d '{"id":"bench"}' >/dev/null

echo "machine: $(nproc) cores, $(uname -r); wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'); ${DURATION}s per run"
run() { # name connections threads [body] path
  local name=$1 conns=$2 threads=$3 body=$4 path=$5
  local line
  line=$(WRK_BODY="$body" wrk -t"$threads" -c"$conns" -d"${DURATION}s" -s benches/server/wrk.lua "$URL$path" | grep '^RESULT')
  echo "$name c=$conns ${line#RESULT }"
}
# Warm up (page cache, first execs).
WRK_BODY='{"command":["true"]}' wrk -t1 -c1 -d2s -s benches/server/wrk.lua "$URL/v1/sandboxes/bench/exec" >/dev/null
run "GET /v1/health" 1 1 "" /v1/health
run "GET /v1/health" 32 2 "" /v1/health
run "POST exec true" 1 1 '{"command":["true"]}' /v1/sandboxes/bench/exec
run "POST exec true" 8 2 '{"command":["true"]}' /v1/sandboxes/bench/exec

# The CLI: one process per exec, sequential.
python3 - "$BIN/sqrx" "$DATA" "$CLI_RUNS" <<'PY'
import statistics, subprocess, sys, time
sqrx, data, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
lat = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run([sqrx, "--data-dir", data, "sandbox", "exec", "bench", "--", "true"], check=True)
    lat.append((time.perf_counter() - t) * 1000)
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"CLI sqrx sandbox exec true c=1 requests={runs} rps={1000 / statistics.mean(lat):.1f} "
      f"p50_ms={p(0.50):.3f} p90_ms={p(0.90):.3f} p99_ms={p(0.99):.3f}")
PY
