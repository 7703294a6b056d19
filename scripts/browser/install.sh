#!/usr/bin/env bash
# Installs npm playwright-core (pinned in package.json) into a cache folder outside the repo and
# prints nothing. The browser tests find it through REKEY_TEST_BROWSER_MODULES, which
# scripts/test.sh sets; the browser itself is Debian's chromium (scripts/install-test-deps.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${REKEY_TEST_BROWSER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rekey-test/browser}
mkdir -p "$cache"
cp "$here/package.json" "$cache/"
if [ ! -d "$cache/node_modules/playwright-core" ]; then
  (cd "$cache" && npm install --no-audit --no-fund --silent >/dev/null)
fi
