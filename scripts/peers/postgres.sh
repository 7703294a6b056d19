#!/usr/bin/env bash
# A private PostgreSQL cluster on 127.0.0.1 for the tests.
#   scripts/peers/postgres.sh start DIR   -> prints the admin URL on stdout
#   scripts/peers/postgres.sh stop DIR
# initdb refuses to run as root, so as root every step runs as the `postgres` user. fsync is off:
# this cluster holds throwaway test databases only.
set -euo pipefail
cmd=${1:?start|stop}; dir=$(realpath -m "${2:?data folder}")
# The postgres user may not be able to enter the caller's folder (a 0700 temp dir, say).
cd /
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as=(); if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi

case "$cmd" in
start)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$dir"; mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  echo rekeytest > "$dir/pwfile"; [ "$(id -u)" = 0 ] && chown postgres: "$dir/pwfile"
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U rekey --pwfile="$dir/pwfile" -A scram-sha-256 \
    --auth-local=trust -N -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
  "${as[@]}" "$bin/createdb" -h "$dir" -p "$port" -U rekey rekey
  echo "postgres://rekey:rekeytest@127.0.0.1:$port/rekey"
  ;;
stop)
  [ -d "$dir/data" ] && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
