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

# WEAK_DETAILS=1 prints every probe's message in every configuration.
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
    escape::no_probe_escapes_a_sandbox -- --exact --nocapture 2>"$REPORT_DIR/$name.log" >/dev/null \
    || { cat "$REPORT_DIR/$name.log"; exit 1; }
done

never=0
na=""
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
  if [ "$escaped" = 0 ]; then
    if grep -q "^$probe n/a\$" "$REPORT_DIR/everything-off"; then na+=" $probe"; else never=$((never + 1)); fi
  fi
done
echo "not applicable on this kernel (it lacks what they attack):${na:- none}"
echo "probes that never escaped: $never"
if [ -n "${WEAK_DETAILS:-}" ]; then cat "$REPORT_DIR"/*.log; fi
[ "$never" = 0 ]
