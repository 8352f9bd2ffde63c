#!/usr/bin/env bash
# Runs every libFuzzer target in a build tree for a bounded time each.
# The committed corpus (fuzz/corpus/<target>) seeds the run; new inputs go to
# a scratch corpus under the build tree, so the repository is never written.
# Usage: scripts/fuzz.sh BUILD_DIR SECONDS_PER_TARGET
set -euo pipefail
dir="$1"
secs="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
dict=()
[ -f "$root/fuzz/ws.dict" ] && dict=(-dict="$root/fuzz/ws.dict")
status=0
for bin in "$dir"/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  target=${name#fuzz_}
  work="$dir/corpus-work/$target"
  art="$dir/artifacts/$target/"
  mkdir -p "$work" "$art" "$root/fuzz/corpus/$target"
  echo "fuzz: $name for ${secs}s"
  if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$art" "${dict[@]}" "$work" "$root/fuzz/corpus/$target" \
      >"$dir/$name.log" 2>&1; then
    echo "fuzz: $name FOUND A CRASH (see $dir/$name.log and $art)" >&2
    tail -n 40 "$dir/$name.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$dir/$name.log" | tr '\n' ' '
    echo
  fi
done
exit $status
