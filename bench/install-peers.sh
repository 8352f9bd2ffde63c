#!/usr/bin/env bash
# Installs the reference servers' npm packages of bench/compare.sh (issue 6):
# `ws` for bench/peers/node-ws.mjs and `bun` for bench/peers/bun-topics.mjs,
# pinned by bench/package-lock.json. The Bun binary comes from the npm
# registry as the platform's optional dependency (@oven/bun-linux-x64 here);
# bun's postinstall script links it to node_modules/.bin/bun, so install
# scripts must not be disabled.
#
# Idempotent: runs `npm ci` only when bench/node_modules is missing or older
# than the lock file, then checks that both peers can start (`bun --version`,
# `ws` importable). Exits non-zero, saying why, when either is unusable.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { printf 'install-peers: %s\n' "$*" >&2; }

command -v npm >/dev/null || { log "npm not found (run scripts/install-deps.sh)"; exit 1; }
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "npm ci in bench/"
  npm ci --no-audit --no-fund --loglevel=error
fi

if ! node -e "import('ws').then(() => process.exit(0), () => process.exit(1))"; then
  log "npm package ws is not importable from bench/"
  exit 1
fi
if ! version=$(node_modules/.bin/bun --version 2>&1); then
  log "node_modules/.bin/bun does not run: $version"
  log "(bun's postinstall must have run: no --ignore-scripts; the platform package @oven/bun-* must exist)"
  exit 1
fi
log "ws $(node -p "require('ws/package.json').version"), bun $version, node $(node --version)"
