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

log() { printf 'fanout: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Incremental build of just the two programs this script runs, so a test
# file that does not compile yet does not stop the benchmark.
build() {
  if [[ ! -f $BUILD/CMakeCache.txt ]]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$BUILD" -j "$(nproc)" --target realtimed rt_loadgen >/dev/null
}

# Every connection is a descriptor in the server and another in rt_loadgen;
# both inherit this limit. Without privileges only the hard limit is reachable.
raise_fd_limit() {
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  local have
  have=$(ulimit -n)
  if [[ $have != unlimited ]] && (( have < SUBSCRIBERS + 100 )); then
    die "open-file limit is $have, need $((SUBSCRIBERS + 100)) (raise the hard limit: ulimit -Hn)"
  fi
}

SERVER_PIN=()
LOADGEN_PIN=()
if [[ $PIN == 1 ]] && command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
  SERVER_PIN=(taskset -c 0)
  LOADGEN_PIN=(taskset -c 1)
fi

TMP=$(mktemp -d)
SERVER_PID=
LOG_SHOWN=0

show_server_log() {
  (( LOG_SHOWN )) && return 0
  LOG_SHOWN=1
  log "last lines of the server's stderr:"
  tail -n 20 "$TMP/server.err" >&2
}

# SIGTERM, then up to 10 s for the graceful shutdown; a server that needs
# SIGKILL or exits non-zero fails the benchmark.
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  local pid=$SERVER_PID status=0
  SERVER_PID=
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    log "server did not exit within 10 s of SIGTERM"
    return 1
  fi
  wait "$pid" || status=$?
  if (( status != 0 )); then
    log "server exited with status $status"
    show_server_log
    return 1
  fi
  if grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$TMP/server.err"; then
    log "sanitizer report in the server log:"
    grep -m 20 -E 'ERROR|runtime error' "$TMP/server.err" >&2
    return 1
  fi
}

cleanup() {
  stop_server || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# Starts the server on 127.0.0.1 with --port 0 and learns the port from its
# `listening on 127.0.0.1:PORT` line: no port guessing, no race.
start_server() {
  local -a cmd
  read -r -a cmd <<<"$REALTIMED"
  "${SERVER_PIN[@]}" "${cmd[@]}" --host 127.0.0.1 --port 0 >"$TMP/server.out" 2>"$TMP/server.err" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/server.out" | head -n 1)
    [[ -n $PORT ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  show_server_log
  die "server exited or did not print 'listening on 127.0.0.1:PORT' within 10 s"
}

FAILED=0
RESULTS=()

# run NAME ARGS...: one rt_loadgen run against the server, bounded by
# `timeout` so a wedged run cannot hold the script.
run() {
  local name=$1 status=0
  shift
  printf '\n== %s\n' "$name"
  timeout 90 "${LOADGEN_PIN[@]}" "$LOADGEN" --host 127.0.0.1 --port "$PORT" \
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

# field JSON KEY: the raw value of a top-level number in rt_loadgen's JSON line.
field() {
  sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1"
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
    build
  fi
  raise_fd_limit
  start_server
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
