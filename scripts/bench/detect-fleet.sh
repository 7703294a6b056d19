#!/usr/bin/env bash
# The detection rules on a benign mixed workload: how many alerts they raise (the false
# positives; the figure to keep at zero) and how far behind the log they fall.
#
#   scripts/bench/detect-fleet.sh [--seconds S] [--tokens N] BIN [CONFIG]
#
# A fresh `BIN serve --dev` (with `--config CONFIG` if given; default: every rule on, their
# defaults) holds 10 tenants of 100 credentials (LDAP targets) and three decoys per tenant; N
# connector tokens (default 100) are each bound to 10 credentials of one tenant, as a fleet of
# workloads would be. Two wrk run at once for S seconds (default 600): 24 connections reveal,
# each request one token's read of one of its own credentials drawn at random; 8 connections put
# new versions of random credentials with each tenant's admin token. Then the script prints the
# rates, the server's CPU per request, the alerts raised (by rule) and how far the rules are
# behind the log at the end of the run and a second later. Installs wrk if it is missing.
set -euo pipefail

seconds=600
tokens=100
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { echo "usage: $0 [--seconds S] [--tokens N] BIN [CONFIG]" >&2; exit 2; }
bin=$(realpath "$1")
config=()
[[ $# -ge 2 ]] && config=(--config "$(realpath "$2")")

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench/common.sh
source "$here/bench/common.sh"
ensure_wrk
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 "$here/peers/free-port.py")
"$bin" serve --dev "${config[@]}" --listen "127.0.0.1:$port" --data "$work/data" >"$work/log" 2>&1 &
pid=$!
wait_answering "http://127.0.0.1:$port/v1/sys/health"
export REKEY_ADDR="http://127.0.0.1:$port" REKEY_TOKEN_FILE="$work/data/root-token"

python3 - "$work" "$tokens" <<'PY'
import json, sys
work, tokens = sys.argv[1], int(sys.argv[2])
with open(f"{work}/import.jsonl", "w") as f:
    for t in range(10):
        for c in range(100):
            f.write(json.dumps({"tenant": f"t{t}", "region": "uk", "name": f"dir-{c}", "kind": "ldap",
                "fields": {"url": f"ldaps://dc.t{t}.example:636", "bind_dn": f"uid=svc-{c},ou=services,dc=t{t},dc=example"},
                "secret": f"s-{t}-{c}"}) + "\n")
PY
"$bin" cred import "$work/import.jsonl" --create-tenants -o json >/dev/null
for t in $(seq 0 9); do
  "$bin" decoy plant --tenant "t$t" --count 3 -o json >/dev/null
done
# The fleet: token i is bound to credentials 10*(i%10) … +9 of tenant i/10 % 10.
: >"$work/fleet.lua.in"
for i in $(seq 0 $((tokens - 1))); do
  t=$(((i / 10) % 10)); first=$(((i % 10) * 10))
  creds=()
  for c in $(seq "$first" $((first + 9))); do creds+=(--cred "dir-$c"); done
  secret=$("$bin" token create --role connector --tenant "t$t" "${creds[@]}" -o json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
  echo "{\"$secret\", $t, $first}," >>"$work/fleet.lua.in"
done
admins=()
for t in $(seq 0 9); do
  admins+=("$("$bin" token create --role tenant-admin --tenant "t$t" -o json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')")
done
unset REKEY_ADDR REKEY_TOKEN_FILE

cat >"$work/reveal.lua" <<LUA
local fleet = {
$(cat "$work/fleet.lua.in")
}
math.randomseed(7)
request = function()
  local f = fleet[math.random(1, #fleet)]
  local path = "/v1/tenants/t" .. f[2] .. "/credentials/dir-" .. (f[3] + math.random(0, 9)) .. "/reveal"
  return wrk.format("POST", path, {["Authorization"] = "Bearer " .. f[1]}, nil)
end
LUA
{
  echo "local admins = {"
  for a in "${admins[@]}"; do echo "\"$a\","; done
  echo "}"
  cat <<'LUA'
math.randomseed(11)
local n = 0
request = function()
  n = n + 1
  local t = math.random(0, 9)
  local c = math.random(0, 99)
  local body = '{"kind":"ldap","fields":{"url":"ldaps://dc.t' .. t .. '.example:636","bind_dn":"uid=svc-' .. c ..
    ',ou=services,dc=t' .. t .. ',dc=example"},"secret":"bench-' .. n .. '"}'
  return wrk.format("PUT", "/v1/tenants/t" .. t .. "/credentials/dir-" .. c,
    {["Authorization"] = "Bearer " .. admins[t + 1], ["Content-Type"] = "application/json"}, body)
end
LUA
} >"$work/put.lua"

tick=$(getconf CLK_TCK)
before=$(ticks "$pid")
wrk -t1 -c24 -d"${seconds}s" --latency -s "$work/reveal.lua" "http://127.0.0.1:$port" >"$work/reveal.out" &
w1=$!
wrk -t1 -c8 -d"${seconds}s" --latency -s "$work/put.lua" "http://127.0.0.1:$port" >"$work/put.out" &
w2=$!
wait "$w1" "$w2"
after=$(ticks "$pid")
for f in reveal put; do
  if grep -q "Non-2xx\|Socket errors" "$work/$f.out"; then echo "errors in the $f run:" >&2; cat "$work/$f.out" >&2; exit 1; fi
done
metrics() { curl -fs "http://127.0.0.1:$port/metrics"; }
lag() { metrics | awk '/^rekey_audit_head_seq / {h = $2} /^rekey_detector_seq / {d = $2} END {print h - d}'; }
lag_end=$(lag)
sleep 1
lag_later=$(lag)
root=$(tr -d '\n' <"$work/data/root-token")
alerts=$(curl -fs -H "Authorization: Bearer $root" "http://127.0.0.1:$port/v1/alerts?limit=10000" |
  python3 -c 'import collections,json,sys; a = json.load(sys.stdin); c = collections.Counter(x["rule"] for x in a); print(len(a), dict(c) or "")')
reveals=$(awk '/requests in/ {print $1}' "$work/reveal.out")
puts=$(awk '/requests in/ {print $1}' "$work/put.out")
python3 - "$seconds" "$reveals" "$puts" "$((after - before))" "$tick" "$tokens" <<PY
import sys
s, r, p, used, tick, tokens = (int(a) for a in sys.argv[1:7])
print(f"benign mixed load, {s} s: {tokens} connector tokens each reading its own 10 credentials of 1,000 "
      f"(24 connections), tenant admins putting (8 connections), 30 decoys planted")
print(f"  reveals {r / s:.0f}/s, puts {p / s:.0f}/s, server CPU {used / tick * 1e6 / (r + p):.1f} us per request")
print(f"  p99 reveal $(awk '/ 99%/ {print $2}' "$work/reveal.out"), put $(awk '/ 99%/ {print $2}' "$work/put.out")")
print("  alerts raised: $alerts")
print("  detection behind the log: $lag_end events at the end of the load, $lag_later a second later")
PY
kill "$pid"; wait "$pid" 2>/dev/null || true
