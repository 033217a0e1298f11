#!/usr/bin/env bash
# Shows that every network and egress-proxy defence is what stops its probe: builds sqrx-core with the
# `insecure-weaken` feature (in its own target directory), runs the network tests with one
# defence switched off at a time, and checks that some probe then gets through (a test fails,
# naming the assertion). As root.
#
#   bash scripts/weakened-network.sh      # prints a table; exit 1 if a weakening broke nothing
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${WEAK_TARGET_DIR:-/tmp/sqrx-weak-target}"
LOGS=$(mktemp -d /tmp/sqrx-weak-net-XXXXXX)
trap 'rm -rf "$LOGS"' EXIT
cargo build -q -p sqrx-core --features insecure-weaken --bin sqrx-init
status=0
# Each defence with the tests whose probes it stops: network:: (policies) or secrets:: (the
# egress proxy).
for pair in net-refused:network net-input:network net-dns:network net-proxy:network \
  net-flush:network net-rebind:network egress-redirect:secrets egress-refuse:secrets; do
  weak=${pair%%:*} suite=${pair##*:}
  if SQRX_WEAKEN="$weak" SQRX_REQUIRE_PRIVILEGED=1 \
    cargo test -q -p sqrx-core --features insecure-weaken --test it "$suite::" \
    >"$LOGS/$weak.log" 2>&1; then
    echo "| $weak | nothing got through: this defence is not shown to matter |"
    status=1
  else
    failed=$(grep -oE "^    $suite::[a-z_]+" "$LOGS/$weak.log" | sed "s/^ *$suite:://" | sort -u | paste -sd, -)
    assertion=$(grep -m1 -A1 "panicked at" "$LOGS/$weak.log" | tail -1 | cut -c1-110)
    echo "| $weak | $failed | $assertion |"
  fi
done
exit $status
