#!/usr/bin/env bash
# Layers in S3 against the `aws` CLI (PyPI awscli) on the same S3-compatible server (moto in
# server mode on loopback, scripts/s3-tools.sh), in one run: push and pull MB/s of one layer
# image of SIZE_MB MiB (bytes that do not compress), each RUNS times (medians), and the time
# a `sqrx sandbox create` takes when it must pull the layer first against when it has it.
#
#   bash benches/s3/run.sh [SIZE_MB] [RUNS]     (as root; results on stdout)
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MB="${1:-200}"
RUNS="${2:-3}"
cargo build -q --release -p sqrx-server --bin sqrx
BIN="${CARGO_TARGET_DIR:-target}/release"
source scripts/s3-tools.sh
WORK=$(mktemp -d /tmp/sqrx-bench-s3-XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SQRX_TEST_MOTO_SERVER" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO=$!
cleanup() {
  for d in "$WORK"/data-*; do [ -d "$d" ] && "$BIN/sqrx" --data-dir "$d" sandbox rm s3bench >/dev/null 2>&1 || true; done
  kill "$MOTO" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT" && break; sleep 0.1; done
export SQRX_S3_BUCKET=bench SQRX_S3_ENDPOINT="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=bench \
  AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
curl -s -X PUT "http://127.0.0.1:$PORT/bench" >/dev/null
AWS=("$SQRX_AWS_CLI" --endpoint-url "$SQRX_S3_ENDPOINT")

mkdir -p "$WORK/src"
head -c "$((SIZE_MB << 20))" /dev/urandom >"$WORK/src/data.bin"
"$BIN/sqrx" --data-dir "$WORK/data-a" layer build "$WORK/src" 100-bench --compression lz4 >/dev/null
IMAGE="$WORK/data-a/layers/100-bench.sqfs"
BYTES=$(stat -c %s "$IMAGE")
echo "machine: $(nproc) cores, $(uname -r); moto 5.2.6, $("$SQRX_AWS_CLI" --version 2>&1 | cut -d' ' -f1); image $BYTES bytes; $RUNS runs"

now() { date +%s.%N; }
since() { python3 -c "print(round($(now) - $1, 3))"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mbps() { python3 -c "print(f'{$BYTES/1048576/$1:.1f}')"; }

declare -a sqrx_up aws_up sqrx_down aws_down
for i in $(seq "$RUNS"); do
  # Each push goes to a fresh prefix, so nothing is deduplicated away.
  t=$(now); SQRX_S3_PREFIX="run$i/" "$BIN/sqrx" --data-dir "$WORK/data-a" layer push 100-bench >/dev/null; sqrx_up+=("$(since "$t")")
  t=$(now); "${AWS[@]}" s3 cp --quiet "$IMAGE" "s3://bench/aws$i/image.sqfs"; aws_up+=("$(since "$t")")
  rm -rf "$WORK/data-b"
  t=$(now); SQRX_S3_PREFIX="run$i/" "$BIN/sqrx" --data-dir "$WORK/data-b" layer pull 100-bench >/dev/null; sqrx_down+=("$(since "$t")")
  t=$(now); "${AWS[@]}" s3 cp --quiet "s3://bench/aws$i/image.sqfs" "$WORK/down.sqfs"; aws_down+=("$(since "$t")")
  rm -f "$WORK/down.sqfs"
done
su=$(printf '%s\n' "${sqrx_up[@]}" | median); au=$(printf '%s\n' "${aws_up[@]}" | median)
sd=$(printf '%s\n' "${sqrx_down[@]}" | median); ad=$(printf '%s\n' "${aws_down[@]}" | median)
echo "push  sqrx ${su}s $(mbps "$su") MB/s   aws s3 cp ${au}s $(mbps "$au") MB/s   sqrx/aws time $(python3 -c "print(f'{$su/$au:.2f}')")"
echo "pull  sqrx ${sd}s $(mbps "$sd") MB/s   aws s3 cp ${ad}s $(mbps "$ad") MB/s   sqrx/aws time $(python3 -c "print(f'{$sd/$ad:.2f}')")"
echo "      (sqrx pull = download + SHA-256 + the store's own verify of every block; aws = download only)"

# A create that must pull the layer first, against one on a store that has it; the pull's
# own split (download with its SHA-256, then the store's verify and publish) from
# `sqrx layer pull --json`, so that miss = download + verify + (mount and start).
"$BIN/sqrx" --data-dir "$WORK/data-c" layer bootstrap >/dev/null
declare -a miss hit down verify
for i in $(seq "$RUNS"); do
  "$BIN/sqrx" --data-dir "$WORK/data-c" layer rm 100-bench >/dev/null 2>&1 || true
  t=$(now); SQRX_S3_PREFIX="run1/" "$BIN/sqrx" --data-dir "$WORK/data-c" sandbox create s3bench --layers 000-base,100-bench >/dev/null; miss+=("$(since "$t")")
  "$BIN/sqrx" --data-dir "$WORK/data-c" sandbox rm s3bench >/dev/null
  "$BIN/sqrx" --data-dir "$WORK/data-c" layer rm 100-bench >/dev/null
  split=$(SQRX_S3_PREFIX="run1/" "$BIN/sqrx" --data-dir "$WORK/data-c" layer pull 100-bench --json)
  down+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])[0]['download_seconds'])" "$split")")
  verify+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])[0]['verify_seconds'])" "$split")")
  t=$(now); "$BIN/sqrx" --data-dir "$WORK/data-c" sandbox create s3bench --layers 000-base,100-bench >/dev/null; hit+=("$(since "$t")")
  "$BIN/sqrx" --data-dir "$WORK/data-c" sandbox rm s3bench >/dev/null
done
m=$(printf '%s\n' "${miss[@]}" | median); h=$(printf '%s\n' "${hit[@]}" | median)
d=$(printf '%s\n' "${down[@]}" | median); v=$(printf '%s\n' "${verify[@]}" | median)
echo "create with the layer here ${h}s; pulling it first ${m}s"
echo "  split: download (and SHA-256) $(python3 -c "print(f'{$d:.3f}')")s + verify and publish $(python3 -c "print(f'{$v:.3f}')")s + mount and start ${h}s = $(python3 -c "print(f'{$d+$v+$h:.3f}')")s"
