#!/usr/bin/env bash
# ensure-chromium.sh makes sure Debian's chromium is installed for the
# browser tests (examples/dashboard/ui/e2e, which launch /usr/bin/chromium,
# or the browser named by $CHROMIUM): it installs it with apt-get when running
# as root, and says what to install otherwise. The tests never download a
# browser of their own.
set -euo pipefail
if [ -n "${CHROMIUM:-}" ]; then
  if [ -x "$CHROMIUM" ]; then exit 0; fi
  echo "CHROMIUM=$CHROMIUM is not an executable file." >&2
  exit 1
fi
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
  echo "installed: $(dpkg-query -W -f '${Package} ${Version}' chromium)"
  exit 0
fi
echo "The browser tests need Chromium at /usr/bin/chromium: install Debian's 'chromium' package" >&2
echo "(sudo apt-get install chromium), or set CHROMIUM to another Chromium's path." >&2
exit 1
