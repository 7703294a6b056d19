#!/usr/bin/env bash
# RustyVault's KV read, measured the way scripts/bench/reveal-cpu.sh measures Rekey's reveal, as
# a peer for comparison (nothing of RustyVault is part of Rekey). RustyVault publishes no
# binaries: build its `rvault` from its own repository, outside this one, and pass its path:
#
#   git clone https://github.com/Tongsuo-Project/RustyVault /tmp/rv && cd /tmp/rv
#   cargo build --release --bin rvault
#   scripts/bench/rustyvault.sh [--seconds S] [--runs N] /tmp/rv/target/release/rvault
#
# A server on file storage (its default backend), no audit configured, initialised with one key
# share and unsealed, 1,000 secrets written under the `secret/` mount; `wrk -t1 -c32` reads one
# secret, or one of the 1,000 at random per request; the server's CPU time (user + system,
# /proc/PID/stat) over the run divided by the requests served.
set -euo pipefail

seconds=8
runs=3
rvault=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) rvault=$(realpath "$1"); shift ;;
  esac
done
[[ -x $rvault ]] || { echo "usage: $0 [--seconds S] [--runs N] PATH/TO/rvault" >&2; exit 2; }

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench/common.sh
source "$here/bench/common.sh"
ensure_wrk
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 "$here/peers/free-port.py")
mkdir -p "$work/data"
cat >"$work/config.hcl" <<HCL
storage "file" {
  path = "$work/data"
}
listener "tcp" {
  address = "127.0.0.1:$port"
  tls_disable = true
}
api_addr = "http://127.0.0.1:$port"
log_level = "warn"
work_dir = "$work"
pid_file = "$work/rvault.pid"
daemon = false
HCL
"$rvault" server --config "$work/config.hcl" >"$work/server.log" 2>&1 &
pid=$!
export RV_ADDR="http://127.0.0.1:$port"
wait_answering "$RV_ADDR/v1/sys/init"
init=$(curl -fsS -X PUT --data '{"secret_shares": 1, "secret_threshold": 1}' "$RV_ADDR/v1/sys/init")
key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0])' <<<"$init")
export RV_TOKEN
RV_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])' <<<"$init")
curl -fsS -X PUT --data "{\"key\": \"$key\"}" "$RV_ADDR/v1/sys/unseal" >/dev/null
python3 - <<'PY'
import json, os, urllib.request
addr, token = os.environ["RV_ADDR"], os.environ["RV_TOKEN"]
for i in range(1000):
    body = json.dumps({"secret": f"bench-secret-{i}"}).encode()
    req = urllib.request.Request(f"{addr}/v1/secret/acme/c{i}", body, method="POST",
                                 headers={"X-Vault-Token": token, "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
req = urllib.request.Request(f"{addr}/v1/secret/acme/c7", headers={"X-Vault-Token": token})
assert json.load(urllib.request.urlopen(req))["data"]["secret"] == "bench-secret-7"
PY

measure_vault_reads rustyvault-kv "$pid" "$seconds" "$runs" "$RV_TOKEN" /v1/secret/acme/c "$RV_ADDR"
