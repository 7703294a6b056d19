#!/usr/bin/env bash
# A private rsyslog (Debian's, with GnuTLS) on 127.0.0.1: RFC 5424 over TCP with TLS
# (octet-counted framing), each message's MSG written as one line to DIR/out.log. The
# certificate comes from a throwaway CA (scripts/peers/tls.sh) and names `localhost`.
#
#   scripts/peers/rsyslog.sh start DIR     -> prints `export REKEY_TEST_RSYSLOG_...=...` lines
#   scripts/peers/rsyslog.sh restart DIR   (the same port and file, a new process)
#   scripts/peers/rsyslog.sh stop DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?start|restart|stop}; dir=$(realpath -m "${2:?folder}")

stop() {
  [ -s "$dir/rsyslogd.pid" ] || return 0
  local pid; pid=$(cat "$dir/rsyslogd.pid")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo gone)
    [ "$state" = gone ] || [ "$state" = Z ] && return 0
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || true
}

run() {
  rm -f "$dir/rsyslogd.pid"
  /usr/sbin/rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/rsyslogd.pid" >>"$dir/rsyslogd.log" 2>&1 &
  local port; port=$(cat "$dir/port")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.05; done
  echo "rsyslog did not come up; see $dir/rsyslogd.log" >&2; return 1
}

case "$cmd" in
start)
  rm -rf "$dir"; mkdir -p "$dir/work"
  "$here/tls.sh" "$dir/tls"
  port=$(python3 "$here/free-port.py"); echo "$port" >"$dir/port"
  cat >"$dir/rsyslog.conf" <<CONF
global(
  workDirectory="$dir/work"
  maxMessageSize="64k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="$dir/tls/ca.pem"
  defaultNetstreamDriverCertFile="$dir/tls/server.pem"
  defaultNetstreamDriverKeyFile="$dir/tls/server-key.pem"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="msgonly" type="string" string="%msg%\n")
ruleset(name="rekey") {
  action(type="omfile" file="$dir/out.log" template="msgonly" flushOnTXEnd="on" asyncWriting="off")
}
input(type="imtcp" port="$port" address="127.0.0.1" ruleset="rekey")
CONF
  run
  echo "export REKEY_TEST_RSYSLOG_ADDR=localhost:$port REKEY_TEST_RSYSLOG_CA=$dir/tls/ca.pem REKEY_TEST_RSYSLOG_OUT=$dir/out.log REKEY_TEST_RSYSLOG_DIR=$dir"
  ;;
restart) stop; run ;;
stop) stop ;;
*) echo "usage: $0 start|restart|stop DIR" >&2; exit 2 ;;
esac
