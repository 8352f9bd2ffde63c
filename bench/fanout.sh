#!/usr/bin/env bash
# Fan-out benchmark: 1 publisher, 1,000 subscribers on one channel, 64-byte
# payloads, against a fresh realtimed on an ephemeral port. Two runs:
#   saturation  as fast as acks allow (64 publishes in flight): throughput
#   rate        a fixed 1,000 publishes/s: latency and CPU per delivery
# Prints rt_loadgen's report for each run and a summary table; exits non-zero
# if a run lost, duplicated or misrouted a message, got an error frame or a
# dropped connection, or if the server did not exit cleanly on SIGTERM.
#
# Knobs (environment): SUBSCRIBERS (1000), PAYLOAD (64), WINDOW (64),
# RATE (1000), DURATION (10 s per run), WARMUP (2 s), PIN (1: taskset the
# server on CPU 0 and rt_loadgen on CPU 1 when there are 2+ CPUs),
# BUILD (build/release), REALTIMED (server command, default $BUILD/realtimed;
# it must accept --host/--port and print `listening on HOST:PORT`),
# LOADGEN ($BUILD/rt_loadgen), JSON_OUT (file to append the JSON lines to).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
REALTIMED=${REALTIMED:-$BUILD/realtimed}
LOADGEN=${LOADGEN:-$BUILD/rt_loadgen}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
PAYLOAD=${PAYLOAD:-64}
WINDOW=${WINDOW:-64}
RATE=${RATE:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PIN=${PIN:-1}
JSON_OUT=${JSON_OUT:-}
BENCH_NAME=fanout
# The server is pinned to one CPU: one worker, unless REALTIME_WORKERS says
# otherwise (bench/workers.sh measures several).
export REALTIME_WORKERS=${REALTIME_WORKERS:-1}

# log, die, build, raise_fd_limit, pinning, TMP, start_server, stop_server, field.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

FAILED=0
RESULTS=()

# run NAME ARGS...: one rt_loadgen run against the server, bounded by
# `timeout` so a wedged run cannot hold the script.
run() {
  local name=$1 status=0
  shift
  printf '\n== %s\n' "$name"
  timeout 90 "${CLIENT_PIN[@]}" "$LOADGEN" --host 127.0.0.1 --port "$PORT" \
    --server-pid "$SERVER_PID" --label "$name" --json "$@" >"$TMP/$name.out" || status=$?
  grep -v '^{' "$TMP/$name.out" || true
  local json
  json=$(grep '^{' "$TMP/$name.out" || true)
  if [[ -n $json ]]; then
    RESULTS+=("$json")
    [[ -z $JSON_OUT ]] || printf '%s\n' "$json" >>"$JSON_OUT"
  fi
  if (( status != 0 )) || [[ $(field "$json" loss) != 0 ]]; then
    log "$name: FAILED (rt_loadgen exit status $status)"
    FAILED=1
  fi
}

summary() {
  printf '\n%-11s %12s %13s %6s %10s %10s %10s %13s %12s %12s\n' scenario published/s \
    delivered/s loss p50_us p99_us max_us srv_us/deliv loadgen_cpu% other_cpu_s
  local r
  for r in "${RESULTS[@]}"; do
    printf '%-11s %12s %13s %6s %10s %10s %10s %13s %12s %12s\n' \
      "$(sed -n 's/.*"label":"\([^"]*\)".*/\1/p' <<<"$r")" \
      "$(field "$r" published_per_s)" "$(field "$r" delivered_per_s)" "$(field "$r" loss)" \
      "$(field "$r" latency_p50_us)" "$(field "$r" latency_p99_us)" \
      "$(field "$r" latency_max_us)" "$(field "$r" server_cpu_us_per_delivery)" \
      "$(field "$r" loadgen_cpu_pct)" "$(field "$r" other_cpu_s)"
  done
  printf '(other_cpu_s: CPU seconds used by other processes during the run: noise)\n'
}

main() {
  if [[ $REALTIMED == "$BUILD/realtimed" || $LOADGEN == "$BUILD/rt_loadgen" ]]; then
    build realtimed rt_loadgen
  fi
  raise_fd_limit $((SUBSCRIBERS + 100))
  # REALTIMED is a command line (e.g. a reference server with its own
  # arguments), split into words.
  local -a server
  read -r -a server <<<"$REALTIMED"
  start_server "${server[@]}"
  log "server pid $SERVER_PID on port $PORT${SERVER_PIN:+ (server CPU 0, rt_loadgen CPU 1)}"
  local common=(--subscribers "$SUBSCRIBERS" --channels 1 --publishers 1 --payload "$PAYLOAD"
                --window "$WINDOW" --warmup "$WARMUP" --duration "$DURATION")
  run saturation "${common[@]}" --rate 0
  run "rate-$RATE" "${common[@]}" --rate "$RATE"
  summary
  stop_server || FAILED=1
  if (( FAILED )); then
    die "FAIL"
  fi
  log "PASS: no loss"
}

main "$@"
