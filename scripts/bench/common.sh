# Shared by the scripts in scripts/bench (sourced, not run): wrk from Debian's packages, waiting
# for a peer's server to answer, a process's CPU time, and one measured wrk run of a peer.

# Installs wrk if it is missing.
ensure_wrk() {
  if ! command -v wrk >/dev/null; then
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
  fi
}

# Waits up to 30 s for URL to give any HTTP answer (a peer's server started, sealed or not).
wait_answering() {
  for _ in $(seq 300); do
    curl -s "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
}

# CPU ticks (user + system) of process $1 so far; `getconf CLK_TCK` of them make a second.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure_peer LABEL PID SECONDS LUA URL: a one-second warm-up, then `wrk -t1 -c32` for SECONDS
# with the script LUA against URL; prints the rate, the server's (PID's) CPU per request and the
# p99, and fails on any error answer.
measure_peer() {
  local label=$1 pid=$2 seconds=$3 lua=$4 url=$5 before after out requests p99
  wrk -t1 -c32 -d1s -s "$lua" "$url" >/dev/null
  before=$(ticks "$pid")
  out=$(wrk -t1 -c32 -d"${seconds}s" --latency -s "$lua" "$url")
  after=$(ticks "$pid")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then echo "errors in a run:" >&2; echo "$out" >&2; return 1; fi
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  p99=$(awk '/ 99%/ {print $2}' <<<"$out")
  python3 -c "import sys; r, u, s, t = (int(a) for a in sys.argv[1:5]); print(f'{sys.argv[5]}\t{r / s:9.0f} req/s\t{u / t * 1e6 / r:7.1f} us CPU/request\tp99 {sys.argv[6]}')" \
    "$requests" "$((after - before))" "$seconds" "$(getconf CLK_TCK)" "$label" "$p99"
}

# measure_vault_reads LABEL PID SECONDS RUNS TOKEN PATH ADDR: RUNS rounds, each a measured run of
# reading the secret PATH0 and one of PATH0 … PATH999 at random per request, through a Vault-style
# API at ADDR (`X-Vault-Token: TOKEN`); prints a line per run.
measure_vault_reads() {
  local label=$1 pid=$2 seconds=$3 runs=$4 path=$6 addr=$7 dir set
  # wrk reads the token from its environment, not from a file.
  local -x VAULT_BENCH_TOKEN=$5
  dir=$(mktemp -d)
  echo 'wrk.headers["X-Vault-Token"] = os.getenv("VAULT_BENCH_TOKEN")' >"$dir/one.lua"
  cat "$dir/one.lua" - >"$dir/random.lua" <<LUA
math.randomseed(2)
request = function()
  return wrk.format("GET", "$path" .. math.random(0, 999), nil, nil)
end
LUA
  for _ in $(seq "$runs"); do
    for set in one random; do
      measure_peer "$label $set" "$pid" "$seconds" "$dir/$set.lua" "$addr${path}0" || { rm -rf "$dir"; return 1; }
    done
  done
  rm -rf "$dir"
}
