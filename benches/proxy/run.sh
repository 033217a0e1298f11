#!/usr/bin/env bash
# Proxy benchmark: HTTP requests/s and latency through sqrx's /proxy into a sandbox against the
# same backend behind Debian's nginx as a reverse proxy (upstream keepalive), and directly;
# WebSocket echo round trips/s through /proxy, through nginx, and directly. Same backend binary
# (benches/proxy: hyper hello-world + tungstenite echo, one thread) in every case: in a sandbox
# (a layer made with `sqrx layer from-host`) behind sqrx, on the host behind nginx. Loopback only.
# With --soak, also runs the 500-WebSocket soak test for 60 s (server memory).
#
#   [ROUNDS=N] bash benches/proxy/run.sh [DURATION_S] [--soak]   (as root; results on stdout)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-10}"
SOAK="${2:-}"
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool (scripts/deps.sh)" >&2; exit 1; }
done

cargo build -q --release -p sqrx-server -p sqrx-core -p proxy_bench --bins
BIN="${CARGO_TARGET_DIR:-target}/release"
WORK=$(mktemp -d /tmp/sqrx-bench-proxy-XXXXXX)
DATA="$WORK/data"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$BIN/sqrx" --data-dir "$DATA" sandbox rm bench >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Ports on 127.0.0.1: the host's backend, nginx, and the sqrx server.
HOST_HTTP=18701 HOST_WS=18702 NGINX=18703
"$BIN/proxy-backend" "127.0.0.1:$HOST_HTTP" "127.0.0.1:$HOST_WS" &
PIDS+=($!)

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log stderr warn;
daemon off;
user root;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream backend { server 127.0.0.1:$HOST_HTTP; keepalive 128; }
  upstream ws { server 127.0.0.1:$HOST_WS; }
  server {
    listen 127.0.0.1:$NGINX;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_buffering off;
    }
    location /ws/ {
      proxy_pass http://ws/;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h;
    }
  }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" -e stderr &
PIDS+=($!)

SQRX_LOG=warn "$BIN/sqrx-server" --data-dir "$DATA" --listen 127.0.0.1:0 >"$WORK/out" 2>"$WORK/log" &
SERVER=$!
PIDS+=($SERVER)
for _ in $(seq 600); do grep -q listening "$WORK/out" && break; sleep 0.1; done
URL=$(sed -n 's/^sqrx: listening on //p' "$WORK/out")
[ -n "$URL" ] || { echo "the server did not start: $(cat "$WORK/log")" >&2; exit 1; }
ADDR=${URL#http://}

"$BIN/sqrx" --data-dir "$DATA" layer from-host 200-proxy-backend "$BIN/proxy-backend" >/dev/null
curl -fsS --noproxy '*' -X POST "$URL/v1/sandboxes" -H 'Content-Type: application/json' \
  -d '{"id":"bench","layers":["000-base","200-proxy-backend"]}' >/dev/null
curl -fsS --noproxy '*' -X POST "$URL/v1/sandboxes/bench/exec" -H 'Content-Type: application/json' \
  -d "{\"command\":\"'$(readlink -f "$BIN/proxy-backend")' 127.0.0.1:8000 127.0.0.1:9000 >/tmp/backend.log 2>&1 &\"}" >/dev/null
for _ in $(seq 100); do
  curl -fsS --noproxy '*' "$URL/proxy/bench/8000/" >/dev/null 2>&1 && break; sleep 0.1
done
curl -fsS --noproxy '*' "$URL/proxy/bench/8000/" | grep -q hello
curl -fsS --noproxy '*' "http://127.0.0.1:$NGINX/" | grep -q hello

echo "machine: $(nproc) cores, $(uname -r); $(nginx -v 2>&1); wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'); ${DURATION}s per run"
# CPU time (user, system; clock ticks) of the processes $1 (a command printing PIDs).
cpu_ticks() {
  local u=0 s=0 p f
  for p in $(eval "$1"); do
    f=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    set -- $f
    u=$((u + ${12})) s=$((s + ${13}))
  done
  echo "$u $s"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
wrk_run() { # name url pids-command
  local name=$1 line before after requests
  before=$(cpu_ticks "$3")
  line=$(wrk -t2 -c64 -d"${DURATION}s" -s benches/server/wrk.lua "$2" | grep '^RESULT')
  after=$(cpu_ticks "$3")
  requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
  # The proxy's CPU per request (user + system), from its processes' counters.
  set -- $before $after
  echo "HTTP $name c=64 ${line#RESULT } cpu_us_per_req=$(( ($3 - $1 + $4 - $2) * TICK_US / requests )) (user $(( ($3 - $1) * TICK_US / requests )), sys $(( ($4 - $2) * TICK_US / requests )))"
}
# Warm up every path.
for u in "http://127.0.0.1:$HOST_HTTP/" "http://127.0.0.1:$NGINX/" "$URL/proxy/bench/8000/"; do
  wrk -t2 -c64 -d2s "$u" >/dev/null
done
# Alternate the two proxies (ROUNDS times, 2 by default), so drift on the shared machine hits
# both.
for _ in $(seq "${ROUNDS:-2}"); do
  wrk_run "nginx (keepalive upstream)" "http://127.0.0.1:$NGINX/" 'pgrep -P "$(cat "$WORK/nginx.pid")"; cat "$WORK/nginx.pid"'
  wrk_run "sqrx /proxy" "$URL/proxy/bench/8000/" 'echo $SERVER'
done
wrk_run "direct (no proxy)" "http://127.0.0.1:$HOST_HTTP/" 'echo ${PIDS[0]}'
echo "sqrx server RSS after HTTP: $(awk '/VmRSS/ {print $2, $3}' /proc/$SERVER/status)"

ws_run() { # name url
  echo "WS $1 $("$BIN/ws-bench" "$2" 64 "$DURATION" 64 | sed 's/^RESULT //')"
}
for round in 1 2; do
  ws_run "nginx" "ws://127.0.0.1:$NGINX/ws/"
  ws_run "sqrx /proxy" "ws://$ADDR/proxy/bench/9000/"
done
ws_run "direct (no proxy)" "ws://127.0.0.1:$HOST_WS/"
echo "sqrx server RSS after WebSockets: $(awk '/VmRSS/ {print $2, $3}' /proc/$SERVER/status)"

if [ "$SOAK" = "--soak" ]; then
  # The black-box test with 500 WebSockets through /proxy, for 60 s (10 s in CI).
  SQRX_WS_SOAK_SECS=60 cargo test -q --release -p sqrx-server --test server websockets_through_the_proxy \
    -- --nocapture 2>&1 | grep -E '^(RESULT|test result)|open in'
fi
