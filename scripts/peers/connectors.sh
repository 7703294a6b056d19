#!/usr/bin/env bash
# The connectors' real peers on 127.0.0.1, each on a free port, all under one folder:
#   OpenLDAP slapd  (ldap:// with StartTLS, ldaps://; an admin and a service account that may
#                    change its own password)
#   Dovecot         (POP3 with STLS, POP3S; SMTP submission with STARTTLS, and implicit TLS)
#   aiosmtpd        (the SMTP sink Dovecot's submission relays to; mail lands in a Maildir)
#   oidc-provider   (npm, pinned; client credentials with client_secret_basic, client_secret_post
#                    and private_key_jwt) with the Microsoft Graph stand-in beside it
# TLS certificates come from a throwaway CA (scripts/peers/tls.sh) and name only `localhost`.
#
#   scripts/peers/connectors.sh start DIR   -> prints `export REKEY_TEST_...=...` lines
#   scripts/peers/connectors.sh stop DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?start|stop}; dir=$(realpath -m "${2:?folder}")
wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "peer on port $1 did not come up" >&2; return 1
}

stop_pidfile() {
  [ -s "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    # A killed daemon may linger as a zombie under a slow init: that counts as stopped.
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo gone)
    [ "$state" = gone ] || [ "$state" = Z ] && return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

case "$cmd" in
start)
  rm -rf "$dir"; mkdir -p "$dir"; chmod 755 "$dir"
  "$here/tls.sh" "$dir/tls"
  # Eight distinct ports from one call: two peers on one port number would leave one of them
  # answering for both (the sink's port once went to Dovecot's submission, which asks for a login).
  { read -r ldap_port; read -r ldaps_port; read -r pop3_port; read -r pop3s_port
    read -r sub_port; read -r subs_port; read -r sink_port; read -r oidc_port; } < <(python3 "$here/free-port.py" 8)

  # --- SMTP sink ---------------------------------------------------------------------------
  mkdir -p "$dir/sink"
  nohup python3 -m aiosmtpd -n -l "127.0.0.1:$sink_port" -c aiosmtpd.handlers.Mailbox "$dir/sink/Maildir" \
    >"$dir/sink/sink.log" 2>&1 &
  echo $! >"$dir/sink/pid"

  # --- OpenLDAP ----------------------------------------------------------------------------
  l="$dir/ldap"; mkdir -p "$l/db"
  cat >"$l/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $l/slapd.pid
argsfile $l/slapd.args
TLSCertificateFile $dir/tls/server.pem
TLSCertificateKeyFile $dir/tls/server-key.pem
TLSCACertificateFile $dir/tls/ca.pem
password-hash {SSHA}
sizelimit unlimited
database mdb
maxsize 2147483648
suffix "dc=rekey,dc=test"
rootdn "cn=admin,dc=rekey,dc=test"
rootpw $(slappasswd -s admin-initial-pw)
directory $l/db
# A service account may change its own password; anyone may bind.
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to * by self read by users read by anonymous auth
CONF
  cat >"$l/init.ldif" <<LDIF
dn: dc=rekey,dc=test
objectClass: top
objectClass: dcObject
objectClass: organization
o: Rekey test
dc: rekey

dn: ou=services,dc=rekey,dc=test
objectClass: organizationalUnit
ou: services

dn: uid=svc-app,ou=services,dc=rekey,dc=test
objectClass: inetOrgPerson
uid: svc-app
cn: svc-app
sn: service
userPassword: $(slappasswd -s svc-initial-pw)
LDIF
  slapadd -f "$l/slapd.conf" -l "$l/init.ldif" -q
  slapd -f "$l/slapd.conf" -h "ldap://127.0.0.1:$ldap_port/ ldaps://127.0.0.1:$ldaps_port/"

  # --- Dovecot -----------------------------------------------------------------------------
  d="$dir/dovecot"; mkdir -p "$d/run" "$d/state" "$d/home"
  nonroot=""; chroot_login=login
  if [ "$(id -u)" = 0 ]; then
    mailuser=rekeymail; chown "$mailuser:" "$d/home"
  else
    mailuser=$(id -un); chroot_login=""
    nonroot="default_internal_user = $mailuser
default_internal_group = $(id -gn)
default_login_user = $mailuser
service auth {
  user = $mailuser
}
service auth-worker {
  user = $mailuser
}"
  fi
  echo 'svc-mail@rekey.test:{PLAIN}mail-initial-pw::::' >"$d/users"
  chmod 644 "$d/users"
  cat >"$d/dovecot.conf" <<CONF
protocols = pop3 submission
listen = 127.0.0.1
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
hostname = localhost
ssl = yes
ssl_cert = <$dir/tls/server.pem
ssl_key = <$dir/tls/server-key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $d/users
}
userdb {
  driver = static
  args = uid=$mailuser gid=$mailuser home=$d/home/%u
}
mail_location = maildir:~/Maildir
first_valid_uid = 100
service anvil {
  chroot = $chroot_login
  # No per-address penalty after failed logins: the tests fail logins on purpose.
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service pop3-login {
  chroot = $chroot_login
  inet_listener pop3 {
    port = $pop3_port
  }
  inet_listener pop3s {
    port = $pop3s_port
    ssl = yes
  }
}
service submission-login {
  chroot = $chroot_login
  inet_listener submission {
    port = $sub_port
  }
  inet_listener submissions {
    port = $subs_port
    ssl = yes
  }
}
# Dovecot's submission refuses AUTH until a relay is configured.
submission_relay_host = 127.0.0.1
submission_relay_port = $sink_port
$nonroot
CONF
  dovecot -c "$d/dovecot.conf"

  # --- OpenID provider and the Graph stand-in ----------------------------------------------
  o="$dir/oidc"; mkdir -p "$o"
  cache=${REKEY_TEST_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rekey-test/oidc}
  mkdir -p "$cache"
  cp "$here/oidc/package.json" "$here/oidc/server.mjs" "$cache/"
  if [ ! -d "$cache/node_modules/oidc-provider" ]; then
    (cd "$cache" && npm install --no-audit --no-fund --silent >/dev/null)
  fi
  nohup node "$cache/server.mjs" "$oidc_port" >"$o/oidc.log" 2>&1 &
  echo $! >"$o/pid"

  for p in "$sink_port" "$ldap_port" "$ldaps_port" "$pop3_port" "$sub_port" "$oidc_port"; do wait_port "$p"; done
  # A port that answers is not proof that the right peer answers it: the sink and the provider
  # must still be running (one that could not bind its port has exited).
  for peer in sink oidc; do
    kill -0 "$(cat "$dir/$peer/pid")" 2>/dev/null || { echo "the $peer peer exited:" >&2; cat "$dir/$peer/"*.log >&2; exit 1; }
  done
  cat <<ENV
export REKEY_TEST_PEERS=$dir
export REKEY_TEST_CA=$dir/tls/ca.pem
export REKEY_TEST_LDAP_PORT=$ldap_port
export REKEY_TEST_LDAPS_PORT=$ldaps_port
export REKEY_TEST_POP3_PORT=$pop3_port
export REKEY_TEST_POP3S_PORT=$pop3s_port
export REKEY_TEST_SUBMISSION_PORT=$sub_port
export REKEY_TEST_SUBMISSIONS_PORT=$subs_port
export REKEY_TEST_SINK_PORT=$sink_port
export REKEY_TEST_SINK_MAILDIR=$dir/sink/Maildir
export REKEY_TEST_DOVECOT_USERS=$d/users
export REKEY_TEST_OIDC_URL=http://127.0.0.1:$oidc_port
ENV
  ;;
stop)
  stop_pidfile "$dir/oidc/pid"
  stop_pidfile "$dir/dovecot/run/master.pid"
  stop_pidfile "$dir/ldap/slapd.pid"
  stop_pidfile "$dir/sink/pid"
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
