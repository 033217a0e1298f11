#!/usr/bin/env bash
# A session (squarex's API) with nothing but curl: open one with the built-in template, check
# its status, read two frames from its WebSocket, stop it with its termination token.
#
#   sqrx serve &                                   # or: sqrx-server
#   bash examples/curl/try.sh                      # SQRX_URL=http://127.0.0.1:8080 by default
#   SQRX_AUTH_TOKEN=... bash examples/curl/try.sh  # opening needs the token when one is set
set -euo pipefail

URL="${SQRX_URL:-http://127.0.0.1:8080}"
auth=()
if [ -n "${SQRX_AUTH_TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $SQRX_AUTH_TOKEN"); fi
# field JSON NAME: one string field of a flat JSON object (enough for these answers).
field() { sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" <<<"$1"; }

echo "== open a session for 60 s (POST /v1/try needs the token)"
SESSION=$(curl -fsS --noproxy '*' -X POST "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"template": "default", "ttl": 60}' "$URL/v1/try")
echo "$SESSION"
ID=$(field "$SESSION" session_id)
TOKEN=$(field "$SESSION" termination_token)
trap 'curl -sS --noproxy "*" -X POST "$URL/v1/stop/$TOKEN" >/dev/null 2>&1 || true' EXIT

echo "== its status (the session id is the capability: no token)"
curl -fsS --noproxy '*' "$URL/v1/status/$ID"; echo

echo "== two frames from its WebSocket, $URL/$ID/ws (a real client: websocat, a browser)"
# curl speaks the upgrade; the frames arrive raw, so keep just their JSON.
curl -sS --noproxy '*' --http1.1 --max-time 2.5 -o - \
  -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
  -H 'Sec-WebSocket-Key: c3FyeC1leGFtcGxlLWtleQ==' "$URL/$ID/ws" 2>/dev/null |
  grep -ao '{"hostname.*"uptime_s":[0-9]*}' | head -2 || true

echo "== stop it (the termination token is the capability); again is fine"
curl -fsS --noproxy '*' -X POST "$URL/v1/stop/$TOKEN"; echo
curl -fsS --noproxy '*' -X DELETE "$URL/v1/stop/$TOKEN"; echo
trap - EXIT
echo "== done"
