#!/usr/bin/env bash
# Make sure the reviewer-console browser test can run: Debian's chromium + chromium-driver
# (apt, as root on CI) and selenium in the project's virtualenv (installs it if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "chromium/chromium-driver missing; run as root or: apt-get install chromium chromium-driver" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
make --no-print-directory install VENV="$VENV"
"$VENV/bin/python" -c "import selenium" 2>/dev/null || "$VENV/bin/pip" install -q "selenium>=4.20"
