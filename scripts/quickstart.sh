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
  mnt=$(mktemp -d)
  trap 'umount "$mnt" 2>/dev/null; rmdir "$mnt"' EXIT
  mount -t squashfs -o loop,ro "$SQRX_DATA/layers/000-base.sqfs" "$mnt"
  chroot "$mnt" /bin/sh -c 'echo "hello from 000-base: $(uname -sm)"; ls /'
fi
