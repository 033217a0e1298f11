# Sourced by scripts/test.sh and the S3 benchmark: a virtualenv with the S3-compatible server
# the tests start (moto in server mode) and the `aws` CLI the benchmark compares with, both
# pinned, from PyPI. Kept outside the clone ($SQRX_TOOLS_DIR, default /var/cache/sqrx-tools)
# and made again when missing or pinned differently. Exports SQRX_TEST_MOTO_SERVER and
# SQRX_AWS_CLI.
S3_TOOLS_PINS="moto[server]==5.2.6 awscli==1.46.3"
S3_TOOLS_VENV="${SQRX_TOOLS_DIR:-/var/cache/sqrx-tools}/s3-venv"
if [ "$(cat "$S3_TOOLS_VENV/.pins" 2>/dev/null)" != "$S3_TOOLS_PINS" ]; then
  echo "s3-tools: installing $S3_TOOLS_PINS into $S3_TOOLS_VENV" >&2
  rm -rf "$S3_TOOLS_VENV"
  python3 -m venv "$S3_TOOLS_VENV"
  # shellcheck disable=SC2086 # the pins are words
  "$S3_TOOLS_VENV/bin/pip" install -q $S3_TOOLS_PINS
  echo "$S3_TOOLS_PINS" >"$S3_TOOLS_VENV/.pins"
fi
export SQRX_TEST_MOTO_SERVER="$S3_TOOLS_VENV/bin/moto_server"
export SQRX_AWS_CLI="$S3_TOOLS_VENV/bin/aws"
