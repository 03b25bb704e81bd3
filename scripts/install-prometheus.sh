#!/usr/bin/env sh
# Install Debian's prometheus (prometheus + promtool) for the tests that query real PromQL and
# check the alerting rules, when missing.
set -eu
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-prometheus: not root and no sudo; install Debian's 'prometheus' package by hand" >&2
        exit 1
    fi
fi
echo "installing Debian's prometheus (PromQL tests, promtool rule checks)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package's postinst may start a service on :9090; the tests start their own.
$SUDO systemctl stop prometheus >/dev/null 2>&1 || true
command -v prometheus >/dev/null && command -v promtool >/dev/null
