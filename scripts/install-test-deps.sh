#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: PostgreSQL (server binaries only;
# no system cluster is created or started), SoftHSM2 and OpenSC (the tests make their own
# private token store), and the cargo-nextest runner if missing.
set -euo pipefail

packages=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || packages+=(postgresql)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || packages+=(softhsm2)
command -v pkcs11-tool >/dev/null || packages+=(opensc)

if [ "${#packages[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Keep apt from creating and starting a system cluster on port 5432: the tests run their own.
  $SUDO mkdir -p /etc/postgresql-common
  echo 'create_main_cluster = false' | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
  fi
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
