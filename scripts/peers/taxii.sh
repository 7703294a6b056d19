#!/usr/bin/env bash
# A private TAXII 2.1 server (medallion, from PyPI; installed by scripts/install-test-deps.sh
# into its own virtualenv) on 127.0.0.1 with the in-memory backend: one API root, `api1`, with
# two empty collections that the user `rekey` may read and write: one the feed tests read
# (REKEY_TEST_TAXII_COLLECTION), one shared incidents are published to
# (REKEY_TEST_TAXII_SHARE_COLLECTION), so that what one test publishes is not another's feed.
# Also names the OASIS STIX validator from the same virtualenv.
#
#   scripts/peers/taxii.sh start DIR     -> prints `export REKEY_TEST_TAXII_...=...` lines
#   scripts/peers/taxii.sh stop DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?start|stop}; dir=$(realpath -m "${2:?folder}")
venv=${XDG_CACHE_HOME:-$HOME/.cache}/rekey-test/stix

stop() {
  [ -s "$dir/medallion.pid" ] || return 0
  kill "$(cat "$dir/medallion.pid")" 2>/dev/null || true
}

case "$cmd" in
start)
  [ -x "$venv/bin/medallion" ] || { echo "medallion is not installed: run scripts/install-test-deps.sh" >&2; exit 1; }
  rm -rf "$dir"; mkdir -p "$dir"
  port=$(python3 "$here/free-port.py")
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  collection=8c0d9f2a-6b1e-4c3d-9a7f-5e2b1c0d4f6a
  shared=3f7e1b9c-2d4a-4e8f-b6c1-9a0d5e2f7b3c
  cat >"$dir/data.json" <<JSON
{
  "/discovery": {"title": "Rekey test TAXII", "default": "http://127.0.0.1:$port/api1/",
                 "api_roots": ["http://127.0.0.1:$port/api1/"]},
  "api1": {
    "information": {"title": "threat feeds", "versions": ["application/taxii+json;version=2.1"],
                    "max_content_length": 104857600},
    "status": [],
    "collections": [
      {"id": "$collection", "title": "indicators", "can_read": true, "can_write": true,
       "media_types": ["application/stix+json;version=2.1"], "objects": [], "manifest": []},
      {"id": "$shared", "title": "shared incidents", "can_read": true, "can_write": true,
       "media_types": ["application/stix+json;version=2.1"], "objects": [], "manifest": []}
    ]
  }
}
JSON
  cat >"$dir/config.json" <<JSON
{"backend": {"module": "medallion.backends.memory_backend", "module_class": "MemoryBackend",
             "filename": "$dir/data.json"},
 "users": {"rekey": "$password"}, "taxii": {"max_page_size": 100}}
JSON
  "$venv/bin/medallion" --host 127.0.0.1 --port "$port" "$dir/config.json" >"$dir/medallion.log" 2>&1 &
  echo $! >"$dir/medallion.pid"
  for _ in $(seq 200); do
    curl -fs -u "rekey:$password" -H 'Accept: application/taxii+json;version=2.1' \
      "http://127.0.0.1:$port/taxii2/" >/dev/null 2>&1 && break
    sleep 0.05
  done
  curl -fs -u "rekey:$password" -H 'Accept: application/taxii+json;version=2.1' "http://127.0.0.1:$port/taxii2/" >/dev/null ||
    { echo "medallion did not come up; see $dir/medallion.log" >&2; exit 1; }
  echo "export REKEY_TEST_TAXII_URL=http://127.0.0.1:$port/api1/ REKEY_TEST_TAXII_COLLECTION=$collection" \
    "REKEY_TEST_TAXII_SHARE_COLLECTION=$shared" \
    "REKEY_TEST_TAXII_USER=rekey REKEY_TEST_TAXII_PASSWORD=$password REKEY_TEST_STIX_VALIDATOR=$venv/bin/stix2_validator"
  ;;
stop) stop ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
