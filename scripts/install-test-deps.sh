#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: PostgreSQL (server binaries only;
# no system cluster is created or started) and the cargo-nextest runner if missing.
set -euo pipefail

need_pg=1
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && need_pg=0

if [ "$need_pg" = 1 ]; then
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
  $SUDO apt-get install -y -q --no-install-recommends postgresql
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
