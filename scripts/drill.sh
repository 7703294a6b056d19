#!/usr/bin/env bash
# The breach drill: plays the day a key store and a certificate are stolen, on real local peers.
# Installs what it needs (as the test script does), builds Rekey, starts OpenLDAP, Dovecot, the
# SMTP sink and the OpenID provider with the Graph stand-in on loopback ports, starts a dev
# server that emails through the sink, runs scripts/drill.py (see there for the story), and
# stops everything. The HTML report is left in ./drill-report.html.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
cargo build --release --bin rekey

run=$(mktemp -d /tmp/rekey-drill.XXXXXX)
chmod 755 "$run"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  scripts/peers/connectors.sh stop "$run/peers" >/dev/null 2>&1 || true
  rm -rf "$run"
}
trap cleanup EXIT

eval "$(scripts/peers/connectors.sh start "$run/peers")"
port=$(python3 scripts/peers/free-port.py)
cat >"$run/rekey.toml" <<TOML
[rotation]
grace = "0s"

[scheduler]
verify_every = "off"

[campaign]
interval = "1s"

[notify]
smtp_url = "smtp://127.0.0.1:$REKEY_TEST_SINK_PORT"
from = "security@provider.example"

# The drill's directory and mail server listen on loopback, which Rekey refuses by default.
[egress]
allow = ["127.0.0.0/8", "::1"]
TOML
target/release/rekey serve --dev --listen "127.0.0.1:$port" --data "$run/data" --config "$run/rekey.toml" \
  >"$run/server.out" 2>"$run/server.log" &
server=$!
for _ in $(seq 1 100); do
  [ -s "$run/data/root-token" ] && (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

unset REKEY_TOKEN
export REKEY_ADDR="http://127.0.0.1:$port" REKEY_TOKEN_FILE="$run/data/root-token" REKEY_BIN="$PWD/target/release/rekey"
export REKEY_TEST_BROWSER_MODULES=${REKEY_TEST_BROWSER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rekey-test/browser}/node_modules
python3 scripts/drill.py
