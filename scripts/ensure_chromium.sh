#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the browser tests (tests/browser).
# Playwright drives it at /usr/bin/chromium; Playwright's own browser download is not used.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests (apt-get)"
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/tmp/apt-chromium.log 2>&1 \
     || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/tmp/apt-chromium.log 2>&1; }; then
    exit 0
  fi
  echo "apt-get install chromium failed; see /tmp/apt-chromium.log" >&2
fi
msg="No /usr/bin/chromium: install Debian's package (sudo apt-get install chromium) to run the browser tests."
if [ "${CI:-}" = "true" ]; then
  echo "$msg" >&2
  exit 1
fi
echo "WARNING: $msg They will be skipped." >&2
