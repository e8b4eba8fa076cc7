#!/usr/bin/env bash
# Make sure tcmalloc is installed: `conscience serve` preloads it into the engine's processes
# (vLLM's CPU engine expects it; under glibc malloc its heap grew through a 30-minute soak).
# Optional for serving (without it the server says so and runs on malloc); CI installs it so the
# slow serve test checks the preload.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libtcmalloc_minimal\.so\|libtcmalloc\.so'; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "tcmalloc is not installed (Debian/Ubuntu: apt-get install libtcmalloc-minimal4);" \
       "the server will run on glibc malloc" >&2
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4 >/dev/null
