#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks format and lints, runs the Rust tests
# (privileged ones included when run as root) and the examples, builds and installs the Python
# and Node packages and runs their tests and quick starts, then checks that no test leaked a
# mount, a loop device, a cgroup or a test directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_TERM_COLOR=never
# Every build names the host's target, as napi's always does: cargo keeps the artefacts of a
# build with --target apart from one without, so the Node addon would otherwise compile the
# whole dependency tree a second time (16 minutes on a fresh 2-core machine).
export CARGO_BUILD_TARGET="${CARGO_BUILD_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}"
# Where the dev profile's binaries are (sqrx, sqrx-init).
export SQRX_BIN_DIR="$CARGO_TARGET_DIR/$CARGO_BUILD_TARGET/debug"

# What exists before the tests (a developer's own sandboxes, say) is not a leak of the tests.
sqrx_cgroups() { { find /sys/fs/cgroup/*/sqrx /sys/fs/cgroup/sqrx -mindepth 1 -maxdepth 1 -type d 2>/dev/null || true; } | sort; }
sqrx_test_dirs() { { ls -d /tmp/sqrx-test-* 2>/dev/null || true; } | sort; }
# Host id ranges held by sandboxes (one file per range, naming the sandbox directory).
sqrx_id_ranges() { { grep -l "sqrx-test" /run/sqrx/idmap/[0-9]* 2>/dev/null || true; } | sort; }
# Processes naming a test's data directory in their arguments (the "[t]" keeps grep's own out).
sqrx_test_processes() { for c in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$c" 2>/dev/null | grep -q "/tmp/sqrx-tes[t]-" && echo "${c%/cmdline}"; done | sort || true; }
BEFORE=$(mktemp -d)
cleanup_dirs=("$BEFORE")
trap 'rm -rf "${cleanup_dirs[@]}"' EXIT
sqrx_cgroups > "$BEFORE/cgroups"
sqrx_test_dirs > "$BEFORE/dirs"
sqrx_id_ranges > "$BEFORE/ids"
sqrx_test_processes > "$BEFORE/procs"
# Network namespaces the network tests make, and host addresses sandboxes of test runtimes hold.
sqrx_test_netns() { { ip netns list 2>/dev/null | awk '{print $1}' | grep '^sqrxt-' || true; } | sort; }
sqrx_test_addresses() { { grep -l "sqrx-test" /run/sqrx/net/*/[0-9]* 2>/dev/null || true; } | sort; }
sqrx_test_netns > "$BEFORE/netns"
sqrx_test_addresses > "$BEFORE/addrs"

echo "== fmt and clippy"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo build (binaries the tests run: sqrx, sqrx-init, the binding libraries)"
cargo build --workspace --locked

echo "== PostgreSQL: a throwaway cluster for the tenant tests"
source scripts/pg-cluster.sh
trap 'pg_cluster_stop; rm -rf "${cleanup_dirs[@]}"' EXIT

echo "== S3: moto (the S3-compatible server the remote tests start) and the aws CLI, pinned"
source scripts/s3-tools.sh

echo "== cargo test"
cargo test --workspace --locked

echo "== Rust examples"
cargo run -q -p sqrx-examples --bin layers
EXAMPLE_DATA=$(mktemp -d /tmp/sqrx-test-examples-XXXXXX)
cleanup_dirs+=("$EXAMPLE_DATA")
SQRX_DATA="$EXAMPLE_DATA" cargo run -q -p sqrx-examples --bin quickstart
rm -rf "$EXAMPLE_DATA"

echo "== Python package: pip install into a fresh virtualenv, pytest, stubtest, quick start"
# The wheel is built in the dev profile, so it reuses what `cargo build` just compiled; the
# build backend builds the packaged sqrx-init with the same profile.
t0=$SECONDS
PYENV=$(mktemp -d /tmp/sqrx-venv-XXXXXX)
cleanup_dirs+=("$PYENV")
/usr/bin/python3 -m venv "$PYENV"
MATURIN_PEP517_ARGS="--profile dev" "$PYENV/bin/pip" install -q ./crates/sqrx-py pytest mypy
echo "(python package built and installed in $((SECONDS - t0)) s)"
# From outside the source tree, so `import sqrx` is the installed package.
(cd "$PYENV" && "$PYENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/crates/sqrx-py/tests")
(cd "$PYENV" && "$PYENV/bin/python" -m mypy.stubtest sqrx)
EXAMPLE_DATA=$(mktemp -d /tmp/sqrx-test-examples-XXXXXX)
cleanup_dirs+=("$EXAMPLE_DATA")
SQRX_DATA="$EXAMPLE_DATA" "$PYENV/bin/python" examples/python/quickstart.py
rm -rf "$EXAMPLE_DATA"
echo "(python steps took $((SECONDS - t0)) s)"

echo "== Node package: napi build, npm pack, node --test, tsc and the TypeScript quick start"
# npm pack runs the package's build (@napi-rs/cli + the packaged sqrx-init), in the dev profile.
t0=$SECONDS
NODE_TMP=$(mktemp -d /tmp/sqrx-npm-XXXXXX)
cleanup_dirs+=("$NODE_TMP")
# npm install, not npm ci: npm 11 rejects this lock file for platform packages of @napi-rs/cli
# it never installs here (npm/cli#4828).
(cd crates/sqrx-node && SQRX_NODE_PROFILE=dev npm install --no-save --no-audit --no-fund && SQRX_NODE_PROFILE=dev npm pack --pack-destination "$NODE_TMP")
echo "(node package built and packed in $((SECONDS - t0)) s)"
# napi build regenerates index.d.ts from the Rust sources: the committed one must match.
if ! git diff --exit-code -- crates/sqrx-node/index.d.ts; then
  echo "crates/sqrx-node/index.d.ts is stale: commit the one napi build generated"; exit 1
fi
node --test crates/sqrx-node/__test__/
# `npm install ./crates/sqrx-node` works directly: the package's install step builds the addon
# and sqrx-init when they are missing (here they are removed first, as in a fresh clone).
rm -f crates/sqrx-node/sqrx.node crates/sqrx-node/sqrx-init
NPM_PROJECT=$(mktemp -d /tmp/sqrx-npm-XXXXXX)
cleanup_dirs+=("$NPM_PROJECT")
(cd "$NPM_PROJECT" && npm init -y >/dev/null && SQRX_NODE_PROFILE=dev npm install --no-audit --no-fund "$ROOT/crates/sqrx-node" \
  && node -e "const s = require('sqrx'); if (typeof s.Runtime !== 'function') process.exit(1)")
test -x crates/sqrx-node/sqrx-init
(cd examples/typescript && npm ci --no-audit --no-fund \
  && npm install --no-save --no-audit --no-fund "$NODE_TMP"/sqrx-*.tgz \
  && npx tsc --noEmit -p . && npx tsc -p .)
EXAMPLE_DATA=$(mktemp -d /tmp/sqrx-test-examples-XXXXXX)
cleanup_dirs+=("$EXAMPLE_DATA")
SQRX_DATA="$EXAMPLE_DATA" node examples/typescript/build/quickstart.js
rm -rf "$EXAMPLE_DATA"
echo "(node steps took $((SECONDS - t0)) s)"

echo "== E2B compatibility: the official e2b SDKs (Python and JavaScript, pinned) against sqrx serve"
t0=$SECONDS
E2B_VENV=$(mktemp -d /tmp/sqrx-venv-XXXXXX)
cleanup_dirs+=("$E2B_VENV")
/usr/bin/python3 -m venv "$E2B_VENV"
"$E2B_VENV/bin/pip" install -q -r crates/sqrx-server/tests/e2b/python/requirements.txt
SQRX_BIN="$SQRX_BIN_DIR/sqrx" "$E2B_VENV/bin/python" -m pytest -q -p no:cacheprovider crates/sqrx-server/tests/e2b/python
(cd crates/sqrx-server/tests/e2b/js && npm ci --no-audit --no-fund && SQRX_BIN="$SQRX_BIN_DIR/sqrx" node --test)
echo "(E2B SDK steps took $((SECONDS - t0)) s)"

echo "== Web console: the committed build matches ui/, then end to end in headless Chromium"
t0=$SECONDS
# The console is built by esbuild from ui/ (pinned in its lock file) and committed into
# crates/sqrx-server/ui/dist, so cargo needs no Node; the build is deterministic, and a stale
# committed copy fails here.
(cd ui && npm ci --no-audit --no-fund && npm run build)
if ! git diff --exit-code -- crates/sqrx-server/ui/dist || [ -n "$(git status --porcelain -- crates/sqrx-server/ui/dist)" ]; then
  echo "crates/sqrx-server/ui/dist is stale: run npm run build in ui/ and commit the result"; exit 1
fi
UI_VENV=$(mktemp -d /tmp/sqrx-venv-XXXXXX)
cleanup_dirs+=("$UI_VENV")
/usr/bin/python3 -m venv "$UI_VENV"
"$UI_VENV/bin/pip" install -q -r crates/sqrx-server/tests/ui/requirements.txt
SQRX_BIN="$SQRX_BIN_DIR/sqrx" SQRX_UI_ARTIFACTS="$CARGO_TARGET_DIR/ui-artifacts" \
  "$UI_VENV/bin/python" -m pytest -q -p no:cacheprovider crates/sqrx-server/tests/ui
echo "(web console steps took $((SECONDS - t0)) s)"

echo "== leak check (mounts, loop devices, cgroups, id ranges, addresses, network namespaces, processes, test directories)"
leaks=0
if grep -q "sqrx-test" /proc/mounts; then
  echo "leaked mounts:"; grep "sqrx-test" /proc/mounts; leaks=1
fi
if command -v losetup >/dev/null && losetup -l -n -O NAME,BACK-FILE | grep -q "sqrx-test"; then
  echo "leaked loop devices:"; losetup -l -n -O NAME,BACK-FILE | grep "sqrx-test"; leaks=1
fi
# A cgroup created meanwhile whose processes live on with a root outside the tests' data dirs
# belongs to a sandbox someone else started on this machine during the run, not to a test.
foreign_sandbox() {
  local pids p
  pids=$(cat "$1/cgroup.procs" 2>/dev/null) || return 1
  [ -n "$pids" ] || return 1
  for p in $pids; do
    grep -q "sqrx-test" "/proc/$p/mountinfo" 2>/dev/null && return 1
  done
  return 0
}
left=""
for cg in $(sqrx_cgroups | comm -13 "$BEFORE/cgroups" -); do
  if foreign_sandbox "$cg"; then echo "(not a test's: $cg, a live sandbox outside the test dirs)"; else left+="$cg"$'\n'; fi
done
if [ -n "$left" ]; then echo "leaked cgroups:"; printf '%s' "$left"; leaks=1; fi
left=$(sqrx_test_dirs | comm -13 "$BEFORE/dirs" -)
if [ -n "$left" ]; then echo "leaked test directories:"; echo "$left"; leaks=1; fi
left=$(sqrx_id_ranges | comm -13 "$BEFORE/ids" -)
if [ -n "$left" ]; then echo "leaked host id ranges:"; for f in $left; do echo "$f: $(cat "$f")"; done; leaks=1; fi
# A process still naming a test's data directory in its arguments (a driver's namespace holder,
# a stray init) outlived its test.
left=$(sqrx_test_processes | comm -13 "$BEFORE/procs" -)
if [ -n "$left" ]; then echo "leaked processes:"; for p in $left; do echo "${p#/proc/}: $(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)"; done; leaks=1; fi
left=$(sqrx_test_netns | comm -13 "$BEFORE/netns" -)
if [ -n "$left" ]; then echo "leaked network namespaces:"; echo "$left"; leaks=1; fi
left=$(sqrx_test_addresses | comm -13 "$BEFORE/addrs" -)
if [ -n "$left" ]; then echo "leaked sandbox addresses:"; for f in $left; do echo "$f: $(cat "$f")"; done; leaks=1; fi
if [ "$leaks" -ne 0 ]; then exit 1; fi
echo "no leaked mounts, loop devices, cgroups, id ranges, addresses, network namespaces, processes or test directories"
