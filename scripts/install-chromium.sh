#!/usr/bin/env sh
# Install Debian's chromium for the test that loads the HTML report in a real headless browser.
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-chromium: not root and no sudo; install Debian's 'chromium' package by hand" >&2
        exit 1
    fi
fi
echo "installing Debian's chromium (used by the HTML report test)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
