# Shared by the scripts in scripts/bench (sourced, not run): wrk from Debian's packages, a
# process's CPU time, and one measured wrk run of a peer.

# Installs wrk if it is missing.
ensure_wrk() {
  if ! command -v wrk >/dev/null; then
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
  fi
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
