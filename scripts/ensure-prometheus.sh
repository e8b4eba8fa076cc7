#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` are on PATH: tests/deploy run Prometheus's own tools on
# deploy/prometheus and scrape a test server with the real binary. Quick no-op when both are
# there; otherwise installs Debian's prometheus package (root or sudo), without starting its
# system service (only the binaries are used, each test runs its own on a free port).
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then exit 0; fi
if ! command -v apt-get >/dev/null; then
  echo "prometheus and promtool are missing: install Prometheus 2.x so both are on PATH" >&2
  exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "installing prometheus needs root (or sudo)" >&2; exit 1; }
  SUDO=(sudo)
fi
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then  # Debian's switch that stops package scripts starting services
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod +x "$POLICY"
  trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
fi
install() {
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}
# Package lists may be missing or stale on a fresh machine: refresh them once if needed.
install 2>/dev/null || { "${SUDO[@]}" apt-get update -qq && install; }
promtool --version | head -n 1
