#!/usr/bin/env bash
# A full session against a running sqrx server, with nothing but curl: health, layers, a
# sandbox with limits, execs (shell, argv, stdin, timeout), files, a snapshot and a restore, the
# exec history, JavaScript, the sq-sandbox API, and cleanup.
#
#   sqrx serve &                                   # or: sqrx-server
#   bash examples/curl/session.sh                  # SQRX_URL=http://127.0.0.1:8080 by default
#   SQRX_AUTH_TOKEN=... bash examples/curl/session.sh   # when the server requires a token
set -euo pipefail

URL="${SQRX_URL:-http://127.0.0.1:8080}"
ID="${SQRX_EXAMPLE_ID:-curl-demo}"
auth=()
if [ -n "${SQRX_AUTH_TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $SQRX_AUTH_TOKEN"); fi

# api METHOD PATH [curl args...]: fail on any HTTP error, print the body.
api() { local method=$1 path=$2; shift 2; curl -fsS --noproxy '*' -X "$method" "${auth[@]}" "$@" "$URL$path"; echo; }
# json METHOD PATH BODY
json() { api "$1" "$2" -H 'Content-Type: application/json' -d "$3"; }

trap 'curl -sS --noproxy "*" -X DELETE "${auth[@]}" "$URL/v1/sandboxes/$ID" >/dev/null 2>&1 || true' EXIT

echo "== health (no token needed)"
api GET /v1/health

echo "== layers"
api GET /v1/layers

echo "== create a sandbox: 256 MiB, one core"
json POST /v1/sandboxes "{\"id\": \"$ID\", \"memory_mb\": 256, \"cpu\": 1, \"env\": {\"GREETING\": \"hello\"}}"

echo "== exec a shell command"
json POST "/v1/sandboxes/$ID/exec" '{"command": "echo $GREETING from $(hostname); id -u"}'

echo "== exec argv with stdin, env and a working directory"
json POST "/v1/sandboxes/$ID/exec" '{"command": ["sh", "-c", "pwd; tr a-z A-Z"], "stdin": "shout\n", "workdir": "/tmp"}'

echo "== a timeout kills the exec's whole process tree (timed_out: true)"
json POST "/v1/sandboxes/$ID/exec" '{"command": "sleep 60 & sleep 60", "timeout": 1}'

echo "== write a file, run it, list its directory, read it back"
api PUT "/v1/sandboxes/$ID/files/app/hello.sh?mode=755" --data-binary $'#!/bin/sh\necho "hi from a file"\n'
json POST "/v1/sandboxes/$ID/exec" '{"command": ["/app/hello.sh"]}'
api GET "/v1/sandboxes/$ID/files/app?list"
api GET "/v1/sandboxes/$ID/files/app/hello.sh"

echo "== snapshot, break something, restore"
json POST "/v1/sandboxes/$ID/snapshot" '{"label": "before"}'
json POST "/v1/sandboxes/$ID/exec" '{"command": "rm /app/hello.sh; ls /app"}'
json POST "/v1/sandboxes/$ID/restore" '{"label": "before"}'
json POST "/v1/sandboxes/$ID/exec" '{"command": "ls /app"}'

echo "== the exec history"
api GET "/v1/sandboxes/$ID/logs"

echo "== JavaScript, in-process (QuickJS), no sandbox process"
json POST /v1/execute '{"code": "console.log(\"computing\"); input.xs.reduce((a, b) => a + b, 0)", "input": {"xs": [1, 2, 3]}}'
json POST /api/execute '{"file": "pi.js", "input": {"terms": 100000}}'

echo "== the same sandbox through the sq-sandbox API"
api GET "/cgi-bin/api/sandboxes/$ID"
json POST "/cgi-bin/api/sandboxes/$ID/exec" '{"cmd": "cat /app/hello.sh", "timeout": 10}'

echo "== destroy"
api DELETE "/v1/sandboxes/$ID" -o /dev/null -w '%{http_code}\n'
trap - EXIT
echo "== done"
