#!/usr/bin/env bash
# Installs every Debian package Herald's build, demo, tests and benchmarks need.
# Idempotent: packages already present are skipped without touching apt at all,
# and `apt-get update` runs at most once per invocation.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates
  clang libclang-rt-14-dev
  libuv1-dev libcurl4-openssl-dev libpq-dev libpcre2-dev libjansson-dev libssl-dev
  libcsv-dev libhttp-parser-dev libcmocka-dev libicu-dev
  libphonenumber-dev libprotobuf-dev libboost-dev
  postgresql-15 postgresql-client-15
  tzdata util-linux wrk
)
# Node is only used by test oracles (sms-segments-calculator, the twilio npm client);
# a machine that already has node/npm from elsewhere keeps them.
if ! command -v npm >/dev/null 2>&1; then PKGS+=(nodejs npm); fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The Debian postgresql package would start a system-wide cluster; Herald runs its own
# private clusters, so keep the service from auto-creating one.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  $SUDO mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
