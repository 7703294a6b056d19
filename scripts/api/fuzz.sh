#!/usr/bin/env bash
# Fuzzes Rekey's HTTP API from its own OpenAPI document with schemathesis (every check, every
# operation): a dev server is started on a free loopback port with scripts/api/fuzz.toml, and
# schemathesis (installed by scripts/install-test-deps.sh into its own virtualenv) runs against
# the document the server serves. Any failure or 5xx fails the script.
#
# Three passes, because two operations would end the others' run: revoking a token (the
# fuzzer's stateful phase finds the ids in GET /v1/tokens and would revoke its own) and sealing
# the vault. Pass 1 runs every other operation with every phase; pass 2 the revocation without
# the stateful phase; pass 3 the seal, last.
#
# Usage: scripts/api/fuzz.sh [extra schemathesis arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."

st=${XDG_CACHE_HOME:-$HOME/.cache}/rekey-test/schemathesis/bin/st
[ -x "$st" ] || { echo "schemathesis is not installed: run scripts/install-test-deps.sh" >&2; exit 1; }

cargo build -q --bin rekey
run=$(mktemp -d /tmp/rekey-fuzz.XXXXXX)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/debug/rekey serve --dev --config scripts/api/fuzz.toml --listen "127.0.0.1:$port" --data "$run/data" \
  >"$run/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/v1/sys/health" >/dev/null 2>&1 && break
  sleep 0.1
done
token=$(cat "$run/data/root-token")
base="http://127.0.0.1:$port"
doc="$base/v1/openapi.json"

# Something to find: two tenants, credentials of each kind (targets on a closed loopback port),
# an incident over one tenant and its campaign. scripts/api/schemathesis.toml offers these
# names and ids to the fuzzer beside the ones it makes up.
api() {
  curl -fsS -X "$1" -H "Authorization: Bearer $token" -H 'content-type: application/json' "$base$2" ${3:+-d "$3"}
}
api POST /v1/tenants '{"name":"acme","region":"uk","contacts":["sec@acme.example"]}' >/dev/null
api POST /v1/tenants '{"name":"globex","region":"us"}' >/dev/null
api PUT /v1/tenants/acme/credentials/directory \
  '{"kind":"ldap","fields":{"url":"ldap://127.0.0.1:9","bind_dn":"cn=rekey,dc=acme,dc=example"},"secret":"s3cret"}' >/dev/null
api PUT /v1/tenants/acme/credentials/relay \
  '{"kind":"smtp","fields":{"host":"127.0.0.1","port":"9","tls":"none","user":"rekey"},"secret":"s3cret"}' >/dev/null
api PUT /v1/tenants/acme/credentials/mailbox \
  '{"kind":"pop3","fields":{"host":"127.0.0.1","port":"9","tls":"none","user":"rekey"},"secret":"s3cret"}' >/dev/null
api PUT /v1/tenants/globex/credentials/blob '{"kind":"generic","secret":"s3cret"}' >/dev/null
incident=$(api POST /v1/incidents '{"title":"drill","scope":["tenant:globex"]}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["incident"]["id"])')
campaign=$(api POST /v1/campaigns "{\"incident\":\"$incident\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
config="$run/schemathesis.toml"
sed -e "s/@INCIDENT@/$incident/; s/@CAMPAIGN@/$campaign/" scripts/api/schemathesis.toml >"$config"

fuzz() {
  "$st" --config-file "$config" run "$doc" --checks all \
    -H "Authorization: Bearer $token" --no-color --seed "${REKEY_FUZZ_SEED:-20261203}" "$@"
}

status=0
echo "== pass 1: every operation but token revocation and the seal, every phase"
fuzz --exclude-operation-id revoke_token --exclude-operation-id seal "$@" || status=1
echo "== pass 2: token revocation, without the stateful phase"
fuzz --include-operation-id revoke_token --phases examples,coverage,fuzzing "$@" || status=1
echo "== pass 3: the seal"
fuzz --include-operation-id seal --phases examples,coverage,fuzzing --exclude-checks ignored_auth "$@" || status=1

# Every 5xx is a failure but one: pass 3 seals the vault, and a sealed vault answers every request,
# a second seal included, with 503 `sealed`.
fives=$(grep 'status=5[0-9][0-9]' "$run/server.log" | grep -v 'route=/v1/sys/seal status=503' || true)
if [[ -n $fives ]]; then
  echo "the server answered 5xx:" >&2
  tail -20 <<<"$fives" >&2
  status=1
fi
if grep -q 'panicked' "$run/server.log"; then
  echo "the server panicked:" >&2
  grep -A5 'panicked' "$run/server.log" | head -40 >&2
  status=1
fi
exit $status
