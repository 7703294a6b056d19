#!/usr/bin/env bash
# Server CPU per audited reveal (or put), measured from outside with an independent load tool
# (wrk), for one or more `rekey` binaries in alternating runs (so that a comparison shares the
# machine's noise).
#
#   scripts/bench/reveal-cpu.sh [--op reveal|put|mixed|kv|reveal,kv] [--seconds S] [--pairs N]
#                               [--connections C] [--dataset DIR] [--warmup S] BIN[=CONFIG] ...
#
# `BIN=CONFIG` runs that binary with `--config CONFIG` beside `--dev` (to compare settings of
# one binary, e.g. audit checkpoints on and off).
# For each run: a fresh `BIN serve --dev` on a free loopback port, one tenant, one generic
# credential and a connector token bound to it; `wrk -t1 -cC -dS` POSTs its reveal (or, with
# `--op put`, PUTs new versions round 1,000 credentials with a tenant admin's token); the server's CPU time (user
# + system, from /proc/PID/stat) over the run divided by the requests wrk completed is the CPU
# per request. Prints one line per run and the median per binary.
#
# `--dataset DIR` (a folder made by `rekey-bench dataset --credentials N --tenants T --data DIR`)
# runs each server on a fresh copy of that folder instead, and every request reveals (or puts a
# new version of) a credential drawn at random from all of it, with the operator's root token.
# `--op mixed` (with `--dataset`) runs two wrk at once for --seconds: 24 connections revealing and
# 8 putting new versions, both of random credentials; it prints each one's rate and p99 and the
# server's resident memory every 30 s, and the CPU per request over both.
# `--op kv` reads the same credential through the Vault-compatible path (`GET
# /v1/kv/data/acme/db`, `X-Vault-Token`) with the same connector token; `--op reveal,kv` runs both
# in turn for each binary in each pair, so the two share the machine's noise.
# Installs wrk from Debian's packages if it is missing.
set -euo pipefail

op=reveal
seconds=8
pairs=5
connections=32
warmup=1
dataset=
bins=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --op) op=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --dataset) dataset=$(realpath "$2"); shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *=*) bins+=("$(realpath "${1%%=*}")=$(realpath "${1#*=}")"); shift ;;
    *) bins+=("$(realpath "$1")"); shift ;;
  esac
done
[[ ${#bins[@]} -gt 0 ]] || { echo "usage: $0 [--seconds S] [--pairs N] [--connections C] BIN [BIN...]" >&2; exit 2; }

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench/common.sh
source "$here/bench/common.sh"
ensure_wrk
tick=$(getconf CLK_TCK)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Each op's method, path and wrk script (`$work/request-OP.lua`).
declare -A paths
IFS=, read -r -a ops <<<"$op"
for o in "${ops[@]}"; do
  case "$o" in
    reveal) method=POST; paths[$o]=/v1/tenants/acme/credentials/db/reveal ;;
    put) method=PUT; paths[$o]=/v1/tenants/acme/credentials/db ;;
    mixed) method=POST; paths[$o]=/ ;;
    kv) method=GET; paths[$o]=/v1/kv/data/acme/db ;;
    *) echo "--op is reveal, put, mixed, kv or reveal,kv" >&2; exit 2 ;;
  esac
  if [[ $o == kv ]]; then header=X-Vault-Token; prefix=""; else header=Authorization; prefix="Bearer "; fi
  cat >"$work/request-$o.lua" <<LUA
wrk.method = "$method"
wrk.headers["$header"] = "$prefix" .. os.getenv("REVEAL_TOKEN")
LUA
done
[[ ${#ops[@]} -eq 1 || -z $dataset ]] || { echo "several ops run without --dataset only" >&2; exit 2; }
op=${ops[0]}
cp "$work/request-$op.lua" "$work/request.lua"
if [[ $op == put ]]; then
  # Each put a new secret, round the 1,000 credentials c0 … c999 of the tenant (puts of one
  # credential take turns, so one hot credential would measure one disk flush per put).
  cat >>"$work/request.lua" <<'LUA'
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/tenants/acme/credentials/c" .. (n % 1000), nil,
    '{"kind":"generic","secret":"bench-secret-' .. n .. '"}')
end
LUA
fi
if [[ -n $dataset ]]; then
  [[ -f $dataset/dataset.env && -f $dataset/root-token ]] ||
    { echo "$dataset is not a folder made by rekey-bench dataset" >&2; exit 2; }
  # shellcheck disable=SC1091
  source "$dataset/dataset.env"
  # A credential drawn at random per request (LuaJIT's generator seeded with SEED: the same
  # sequences in every run, but the measured run's is not the warm-up's, so what the warm-up
  # read is not what the measured run reads).
  lua() {
    cat <<LUA
wrk.headers["Authorization"] = "Bearer " .. os.getenv("REVEAL_TOKEN")
wrk.headers["Content-Type"] = "application/json"
math.randomseed(tonumber(os.getenv("SEED") or "1"))
local n = 0
request = function()
  local t, c = math.random(0, $TENANTS - 1), math.random(0, $PER_TENANT - 1)
  local path = "/v1/tenants/t" .. t .. "/credentials/c" .. c
  if "$1" == "reveal" then
    return wrk.format("POST", path .. "/reveal", nil, nil)
  end
  n = n + 1
  return wrk.format("PUT", path, nil, '{"kind":"ldap","fields":{"url":"ldaps://dc' .. t ..
    '.example:636","bind_dn":"cn=svc,dc=t' .. t .. ',dc=example"},"secret":"bench-secret-' .. n .. '"}')
end
LUA
  }
  lua reveal >"$work/reveal.lua"
  lua put >"$work/put.lua"
  if [[ $op == mixed ]]; then cp "$work/reveal.lua" "$work/request.lua"; else lua "$op" >"$work/request.lua"; fi
elif [[ $op == mixed ]]; then
  echo "--op mixed needs --dataset" >&2; exit 2
fi


# The reveal cache's hits and misses so far ("- -" from a build without them).
cache() {
  curl -fs "http://127.0.0.1:$1/metrics" | awk '
    /^rekey_reveal_cache_hits_total / {h = $2} /^rekey_reveal_cache_misses_total / {m = $2}
    END {if (h == "") print "- -"; else print h, m}'
}

run() {
  local label=$1 bin=${1%%=*} config=() dir port pid token out requests used rss op=${2:-$op}
  local path=${paths[$op]} script=$work/request.lua
  [[ -z $dataset && -f $work/request-$op.lua && $op != put ]] && script=$work/request-$op.lua
  [[ ${#ops[@]} -gt 1 ]] && label="$label [$op]"
  [[ $1 == *=* ]] && config=(--config "${1#*=}")
  dir=$(mktemp -d -p "$work")
  port=$(python3 "$here/peers/free-port.py")
  if [[ -n $dataset ]]; then
    cp -r "$dataset" "$dir/data"
    rm -f "$dir/data"/*.lock
    # The copy's gigabyte of dirty pages would otherwise be written back during the run, and
    # the server's flushes of its WAL would wait behind it.
    sync
  fi
  "$bin" serve --dev "${config[@]}" --listen "127.0.0.1:$port" --data "$dir/data" >"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$port/v1/sys/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  export REKEY_ADDR="http://127.0.0.1:$port" REKEY_TOKEN_FILE="$dir/data/root-token"
  if [[ -n $dataset ]]; then
    token=$(tr -d '\n' <"$dir/data/root-token")
  else
    "$bin" tenant create acme --region uk -o json >/dev/null
    printf 'bench-secret-value' | "$bin" cred put acme/db --kind generic --secret-stdin -o json >/dev/null
    if [[ $op == reveal || $op == kv ]]; then
      token=$("$bin" token create --role connector --tenant acme --cred db -o json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
    else
      token=$("$bin" token create --role tenant-admin --tenant acme -o json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
    fi
  fi
  unset REKEY_ADDR REKEY_TOKEN_FILE
  # A warm-up (one second unless --warmup says), then the measured run.
  SEED=1 REVEAL_TOKEN=$token wrk -t1 -c"$connections" -d"${warmup}s" -s "$script" \
    "http://127.0.0.1:$port$path" >/dev/null
  local before after cache_before cache_after
  cache_before=$(cache "$port")
  before=$(ticks "$pid")
  if [[ $op == mixed ]]; then
    mixed "$pid" "$port" "$token" "$dir"
    out=$(cat "$dir/reveal.out" "$dir/put.out")
  else
    out=$(SEED=2 REVEAL_TOKEN=$token wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$script" \
      "http://127.0.0.1:$port$path")
  fi
  after=$(ticks "$pid")
  cache_after=$(cache "$port")
  rss=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then echo "errors in the run of $label:" >&2; echo "$out" >&2; exit 1; fi
  requests=$(awk '/requests in/ {n += $1} END {print n}' <<<"$out")
  if [[ $op == mixed ]]; then
    local each
    each=$(awk -v s="$seconds" '/requests in/ {r[++i] = $1} / 99%/ {p[++j] = $2}
      END {printf "reveals %d/s p99 %s, puts %d/s p99 %s", r[1] / s, p[1], r[2] / s, p[2]}' <<<"$out")
    echo "$label: $each; resident MB every 30 s: $(tr '\n' ' ' <"$dir/rss")" >&2
  fi
  used=$((after - before))
  python3 - "$label" "$requests" "$used" "$tick" "$seconds" "$(awk '/ 99%/ {printf "%s%s", s, $2; s = "/"}' <<<"$out")" \
    "$cache_before" "$cache_after" "$rss" <<'PY'
import sys
bin_, req, used, tick, secs, p99 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
before, after, rss = sys.argv[7].split(), sys.argv[8].split(), sys.argv[9]
cache = "cache -"
if "-" not in before + after:
    hits, misses = float(after[0]) - float(before[0]), float(after[1]) - float(before[1])
    cache = f"cache hits {100 * hits / max(hits + misses, 1):.0f} %"
print(f"{bin_}\t{req / secs:9.0f} req/s\t{used / tick * 1e6 / req:7.1f} us CPU/request\tp99 {p99}\t{cache}\tRSS {rss} MB")
PY
}

# The mixed run: 24 connections revealing and 8 putting new versions, both of random credentials,
# for --seconds, with the server's resident memory sampled every 30 s into DIR/rss.
mixed() {
  local pid=$1 port=$2 token=$3 dir=$4 a b
  SEED=2 REVEAL_TOKEN=$token wrk -t1 -c24 -d"${seconds}s" --latency -s "$work/reveal.lua" \
    "http://127.0.0.1:$port/" >"$dir/reveal.out" &
  a=$!
  SEED=3 REVEAL_TOKEN=$token wrk -t1 -c8 -d"${seconds}s" --latency -s "$work/put.lua" \
    "http://127.0.0.1:$port/" >"$dir/put.out" &
  b=$!
  : >"$dir/rss"
  while kill -0 "$a" 2>/dev/null || kill -0 "$b" 2>/dev/null; do
    awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status" >>"$dir/rss"
    for _ in $(seq 30); do kill -0 "$a" 2>/dev/null || kill -0 "$b" 2>/dev/null || break; sleep 1; done
  done
  wait "$a" "$b"
}

results=$work/results
for _ in $(seq "$pairs"); do
  for bin in "${bins[@]}"; do
    for o in "${ops[@]}"; do
      run "$bin" "$o" | tee -a "$results"
    done
  done
done
echo "medians:"
python3 - "$results" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(lambda: ([], []))
for line in open(sys.argv[1]):
    parts = line.split("\t")
    rows[parts[0]][0].append(float(parts[1].split()[0]))
    rows[parts[0]][1].append(float(parts[2].split()[0]))
first = None
for bin_, (rps, cpu) in rows.items():
    m_rps, m_cpu = statistics.median(rps), statistics.median(cpu)
    note = ""
    if first is None:
        first = m_cpu
    else:
        note = f"\tCPU/request {100 * (m_cpu / first - 1):+.1f} % against the first"
    print(f"{bin_}\t{m_rps:9.0f} req/s\t{m_cpu:7.1f} us CPU/request{note}")
PY
