#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks format and lints, runs the Rust tests
# (privileged ones included when run as root), the binding smoke tests, then checks that no
# test leaked a mount or a loop device.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export SQRX_VENV="${SQRX_VENV:-/var/cache/sqrx-ci/venv}"
export CARGO_TERM_COLOR=never

# What exists before the tests (a developer's own sandboxes, say) is not a leak of the tests.
sqrx_cgroups() { { find /sys/fs/cgroup/*/sqrx /sys/fs/cgroup/sqrx -mindepth 1 -maxdepth 1 -type d 2>/dev/null || true; } | sort; }
sqrx_test_dirs() { { ls -d /tmp/sqrx-test-* 2>/dev/null || true; } | sort; }
BEFORE=$(mktemp -d)
sqrx_cgroups > "$BEFORE/cgroups"
sqrx_test_dirs > "$BEFORE/dirs"

echo "== fmt and clippy"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo build (binaries the tests run: sqrx, sqrx-init, the binding libraries)"
cargo build --workspace --locked

echo "== cargo test"
cargo test --workspace --locked

echo "== examples"
cargo run -q -p sqrx-examples --bin layers

echo "== Python binding smoke test"
PYMOD=$(mktemp -d)
trap 'rm -rf "$PYMOD" "$BEFORE"' EXIT
cp "$CARGO_TARGET_DIR/debug/libsqrx.so" "$PYMOD/sqrx.abi3.so"
PYTHONPATH="$PYMOD" "$SQRX_VENV/bin/pytest" -q crates/sqrx-py/tests

echo "== Node binding smoke test"
cp "$CARGO_TARGET_DIR/debug/libsqrx_node.so" crates/sqrx-node/sqrx.node
node --test crates/sqrx-node/__test__/

echo "== leak check (mounts, loop devices, cgroups, test directories)"
leaks=0
if grep -q "sqrx-test" /proc/mounts; then
  echo "leaked mounts:"; grep "sqrx-test" /proc/mounts; leaks=1
fi
if command -v losetup >/dev/null && losetup -l -n -O NAME,BACK-FILE | grep -q "sqrx-test"; then
  echo "leaked loop devices:"; losetup -l -n -O NAME,BACK-FILE | grep "sqrx-test"; leaks=1
fi
left=$(sqrx_cgroups | comm -13 "$BEFORE/cgroups" -)
if [ -n "$left" ]; then echo "leaked cgroups:"; echo "$left"; leaks=1; fi
left=$(sqrx_test_dirs | comm -13 "$BEFORE/dirs" -)
if [ -n "$left" ]; then echo "leaked test directories:"; echo "$left"; leaks=1; fi
if [ "$leaks" -ne 0 ]; then exit 1; fi
echo "no leaked mounts, loop devices, cgroups or test directories"
