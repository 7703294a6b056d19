#!/usr/bin/env bash
# The test command: installs what the tests need, starts the real peers on loopback, runs every
# test of the workspace (unit, store suite on SQLite and PostgreSQL, API, CLI, PKCS#11 on SoftHSM2),
# stops the peers.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

run=$(mktemp -d /tmp/rekey-test.XXXXXX)
chmod 755 "$run"
cleanup() { scripts/peers/postgres.sh stop "$run/pg" || true; rm -rf "$run"; }
trap cleanup EXIT

REKEY_TEST_POSTGRES_URL=$(scripts/peers/postgres.sh start "$run/pg")
export REKEY_TEST_POSTGRES_URL
echo "test PostgreSQL: ${REKEY_TEST_POSTGRES_URL%%:rekeytest@*}@${REKEY_TEST_POSTGRES_URL##*@}"

# SoftHSM2 in a private token directory: nothing touches the system's token store.
SOFTHSM2_CONF=$(scripts/peers/softhsm.sh init "$run/hsm")
export SOFTHSM2_CONF REKEY_TEST_HSM_TOKEN=rekey-test REKEY_TEST_HSM_PIN=1234
echo "test SoftHSM2 token: rekey-test in $run/hsm"

cargo nextest run --workspace --no-fail-fast "$@"
