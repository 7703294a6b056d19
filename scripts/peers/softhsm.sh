#!/usr/bin/env bash
# A private SoftHSM2 token store for the tests: `softhsm.sh init DIR` writes DIR/softhsm2.conf
# (token files under DIR/tokens, nothing in the system's token store) and initializes one token,
# "rekey-test", with user PIN 1234. It prints the SOFTHSM2_CONF path.
set -euo pipefail

cmd=${1:?usage: softhsm.sh init DIR}
dir=${2:?usage: softhsm.sh init DIR}
[ "$cmd" = init ] || { echo "usage: softhsm.sh init DIR" >&2; exit 2; }

mkdir -p "$dir/tokens"
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label rekey-test \
  --so-pin 87654321 --pin 1234 >/dev/null
echo "$dir/softhsm2.conf"
