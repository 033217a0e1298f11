#!/usr/bin/env bash
# Installs everything sqrx's build, tests and benchmarks need on a fresh Debian machine.
# Idempotent and quiet when everything is already there.
set -euo pipefail

APT_PACKAGES=(
  squashfs-tools   # mksquashfs: the peer in benches/layer_pack (never used by sqrx itself)
  util-linux       # mount, umount, losetup for the privileged tests
  procps           # ps in the default base layer
  python3 python3-venv python3.11  # Python package tests (fresh venv); the from-host test copies python3.11
  python3-requests python3-httpx   # the secrets tests: real Python HTTP clients inside a sandbox
  nodejs           # the Node package (its npm comes with nodesource's nodejs, or below)
  debootstrap      # `sqrx layer bootstrap --preset debian`
  busybox-static   # a static toolbox some tests and users put in layers
  curl             # examples/curl/session.sh (run by the server tests)
  wrk              # benches/server, benches/proxy: HTTP load generator
  nginx            # benches/proxy: the reverse proxy peer (never started as a service)
  iproute2         # `ip netns`: the network tests build their own test internet
  nftables         # `nft list ruleset`: the network tests read what sqrx installed (sqrx uses netlink)
  sudo             # `sqrx layer bootstrap --preset e2b` copies it: E2B's base image has passwordless sudo
  postgresql       # the tenant tests run against a throwaway PostgreSQL cluster too (never the service)
  chromium         # the web console's end-to-end tests and benches/ui (Playwright drives it; no download)
  fonts-dejavu-core  # a font for Chromium's text (the console's font stacks name DejaVu)
)

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The bench starts its own nginx on a loopback port; a packaged service would hold port 80.
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null; then
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
  # Likewise the tests start their own PostgreSQL cluster; the packaged one is not needed.
  if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v systemctl >/dev/null; then
    $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
  fi
fi
# Debian's nodejs ships without npm.
if ! command -v npm >/dev/null; then
  echo "deps: installing npm" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
