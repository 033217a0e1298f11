#!/usr/bin/env bash
# Installs the benchmark peer (quickjs-emscripten) from npm into benches/js/peer/node_modules.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/quickjs-emscripten ]; then
  if [ -f package-lock.json ]; then npm ci --silent --no-audit --no-fund; else npm install --silent --no-audit --no-fund; fi
fi
