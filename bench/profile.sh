#!/usr/bin/env bash
# Where the server's time goes in one scenario of issue 6 (bench/scenarios.sh):
# starts realtimed pinned to CPU 0, drives it with rt_loadgen pinned to CPU 1,
# records the server with `perf record -g` during the measured window, and
# prints rt_loadgen's report, the write path's counters from GET /stats
# (socket writes and frames per delivery) and perf's breakdown: kernel vs
# user space, and the top symbols. The report also goes to
# $BUILD/profile-SCENARIO.txt. Used to explain a missed target in
# bench/RESULTS.md; never part of the test suite.
#
# Usage: bash bench/profile.sh [A|B|C|E]   (default A)
# Knobs (environment): DURATION (5 s recorded), WARMUP (2 s), BUILD
# (build/release), REALTIMED_ARGS (extra server flags, e.g. "--io-uring 0"
# style options of your build), TOP (25 symbols).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
LOADGEN=${LOADGEN:-$BUILD/rt_loadgen}
SCENARIO=${1:-A}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
TOP=${TOP:-25}
PIN=1
BENCH_NAME=profile
read -r -a EXTRA <<<"${REALTIMED_ARGS:-}"

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=scenarios.sh
. "$(dirname "$0")/scenarios.sh"

command -v perf >/dev/null || die "perf is not installed (Debian: linux-perf)"
[[ $SCENARIO != D ]] || die "scenario D is about memory: see bench/RESULTS.md's memory budget"
build realtimed rt_loadgen
raise_fd_limit 4096
scenario_args "$SCENARIO"

# stats KEY: a number from GET /stats (bash's /dev/tcp: no HTTP client needed).
stats_doc() {
  exec 3<>"/dev/tcp/127.0.0.1/$PORT"
  printf 'GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  cat <&3
  exec 3<&-
}
stat_of() { grep -o "\"$2\":[0-9]*" <<<"$1" | tail -n 1 | cut -d: -f2; }

start_server "$BUILD/realtimed" --workers 1 "${EXTRA[@]}" # pinned to one CPU: one worker
"${CLIENT_PIN[@]}" "$LOADGEN" --host 127.0.0.1 --port "$PORT" --server-pid "$SERVER_PID" \
  --server-core 0 --label "profile/$SCENARIO" "${ARGS[@]}" >"$TMP/loadgen.out" 2>&1 &
LG=$!
# rt_loadgen connects, subscribes and warms up before its window starts.
sleep "$((WARMUP + 2))"
before=$(stats_doc)
perf record -q -g -p "$SERVER_PID" -o "$TMP/perf.data" -- sleep "$DURATION" 2>"$TMP/perf.err" || true
after=$(stats_doc)
wait "$LG" || die "rt_loadgen failed: $(tail -n 5 "$TMP/loadgen.out")"

delta() { echo $(( $(stat_of "$after" "$1") - $(stat_of "$before" "$1") )); }
delivered=$(delta messagesDelivered)
writes=$(delta socketWrites)
frames=$(delta framesWritten)
{
  printf '# profile of scenario %s (%s s recorded)\n\n' "$SCENARIO" "$DURATION"
  cat "$TMP/loadgen.out"
  printf '\n## write path during the recording (GET /stats deltas)\n\n'
  printf 'deliveries %s, socket writes %s, frames written %s\n' "$delivered" "$writes" "$frames"
  awk -v d="$delivered" -v w="$writes" -v f="$frames" 'BEGIN {
    if (d > 0) printf "writes per delivery %.3f, frames per write %.1f\n", w / d, (w > 0 ? f / w : 0) }'
  printf '\n## kernel vs user space (samples by object)\n\n'
  perf report -i "$TMP/perf.data" --no-children --sort dso --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -n 12
  printf '\n## top %s symbols (self time)\n\n' "$TOP"
  perf report -i "$TMP/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null |
    grep -E '^ +[0-9]' | head -n "$TOP"
} | tee "$BUILD/profile-$SCENARIO.txt"
