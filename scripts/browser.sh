#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are installed for the browser tests (tests/web/).
# Installs Debian's chromium and chromium-driver packages when either binary is missing, as
# scripts/pg.sh does for PostgreSQL; does nothing when both are there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium and chromedriver are missing, and installing them needs root: apt-get install chromium chromium-driver" >&2
  exit 1
fi
echo "installing Chromium and chromedriver from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq chromium chromium-driver >&2
command -v chromium >/dev/null && command -v chromedriver >/dev/null
