#!/usr/bin/env bash
# Every global symbol of the static libraries starts with rt_: they link into
# other people's programs (docs/architecture.md, "Naming").
set -euo pipefail
dir="${1:-build/release}"
bad=$(for lib in "$dir"/librealtime.a "$dir"/librt_core.a; do
  nm -g --defined-only "$lib" | awk 'NF==3 && $3 !~ /^rt_/ {print $3}'
done)
if [ -n "$bad" ]; then
  echo "check-symbols: global symbols without the rt_ prefix:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "check-symbols: ok"
