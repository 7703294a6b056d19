#!/usr/bin/env bash
# A throwaway test CA and one server certificate it signs, for the loopback peers.
#   scripts/peers/tls.sh DIR   -> DIR/ca.pem, DIR/server.pem, DIR/server-key.pem
# The server certificate names only `localhost` (no IP address), so a client that connects to
# 127.0.0.1 sees a name mismatch: the tests use that on purpose.
set -euo pipefail
dir=${1:?folder}; mkdir -p "$dir"; cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=Rekey test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout ca-key.pem -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server-key.pem -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3 \
  -extfile ext.cnf -out server.pem 2>/dev/null
chmod 644 server-key.pem server.pem ca.pem
rm -f server.csr ext.cnf
