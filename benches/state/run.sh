#!/usr/bin/env bash
# Runs the state benchmark as root (mksquashfs from squashfs-tools is the packing peer).
set -euo pipefail
cd "$(dirname "$0")/../.."
dpkg-query -W -f='${Status}' squashfs-tools 2>/dev/null | grep -q "install ok installed" || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq squashfs-tools >/dev/null
}
cargo build --release -p state_bench
exec "${CARGO_TARGET_DIR:-target}/release/state" "$@"
