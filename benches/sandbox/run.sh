#!/usr/bin/env bash
# Installs the peers (bubblewrap, runc, crun) and runs the sandbox benchmark as root.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
for p in bubblewrap runc crun util-linux; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release -p sandbox_bench
exec "${CARGO_TARGET_DIR:-target}/release/sandbox" "$@"
