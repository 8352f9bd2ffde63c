#!/usr/bin/env bash
# Installs what building, running and testing SymbioseDB Realtime needs on Debian 12.
# Idempotent: installs only what is missing, so `make run` and `make test` call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config libuv1-dev libjansson-dev libssl-dev libcmocka-dev
      clang libclang-rt-14-dev llvm libsqlite3-dev sqlite3 liburing-dev)
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Test-only npm modules (pinned by tests/package-lock.json).
if [ "${1:-}" = "--test" ]; then
  if [ ! -d tests/node_modules/ws ] || [ tests/package-lock.json -nt tests/node_modules/.package-lock.json ]; then
    (cd tests && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
