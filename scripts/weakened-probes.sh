#!/usr/bin/env bash
# Shows that every escape probe can fail: builds sqrx-core with the `insecure-weaken` feature (in
# its own target directory), runs the escape suite's probes with defences switched off in a few
# combinations, and checks that each probe escapes in at least one of them. As root.
#
#   bash scripts/weakened-probes.sh            # prints a table; exit 1 if a probe never escaped
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${WEAK_TARGET_DIR:-/tmp/sqrx-weak-target}"
REPORT_DIR=$(mktemp -d /tmp/sqrx-weak-XXXXXX)
trap 'rm -rf "$REPORT_DIR"' EXIT
cargo build -q -p sqrx-testkit --bin sqrx-probe
cargo build -q -p sqrx-core --features insecure-weaken --bin sqrx-init

# name|SQRX_ISOLATION|SQRX_WEAKEN
CONFIGS=(
  "everything-off|host-root|all"
  "in-namespaces|host-root|caps,seccomp,nnp,nosuid,dumpable,devices"
  "userns-only|user-namespace|seccomp,caps"
)
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r name iso weaken <<<"$c"
  echo "== $name: SQRX_ISOLATION=$iso SQRX_WEAKEN=$weaken"
  SQRX_ISOLATION="$iso" SQRX_WEAKEN="$weaken" SQRX_PROBE_REPORT="$REPORT_DIR/$name" \
    cargo test -q -p sqrx-core --features insecure-weaken --test it \
    escape::no_probe_escapes_a_sandbox -- --exact >/dev/null
done

never=0
printf '%-24s' probe; for c in "${CONFIGS[@]}"; do printf '%-16s' "${c%%|*}"; done; echo
for probe in $(cut -d' ' -f1 "$REPORT_DIR/everything-off" | sort -u); do
  printf '%-24s' "$probe"
  escaped=0
  for c in "${CONFIGS[@]}"; do
    v=$(awk -v p="$probe" '$1 == p {print $2}' "$REPORT_DIR/${c%%|*}")
    printf '%-16s' "${v:-?}"
    [ "$v" = ESCAPED ] && escaped=1
  done
  echo
  [ "$escaped" = 1 ] || { never=$((never + 1)); }
done
echo "probes that never escaped: $never"
[ "$never" = 0 ]
