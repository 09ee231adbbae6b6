#!/usr/bin/env bash
# ensure-chromium.sh makes sure Debian's chromium is installed for the
# browser tests: it installs it with apt-get when running as root, and says
# what to install otherwise.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "The browser tests need Chromium: install Debian's 'chromium' package (sudo apt-get install chromium)." >&2
exit 1
