# shellcheck shell=bash disable=SC2034  # CLIENT_PIN is for the sourcing scripts
# Shared plumbing of the benchmark scripts (fanout.sh, livequery.sh), sourced
# with `. "$(dirname "$0")/lib.sh"` after `set -euo pipefail` and the knobs.
#
# It reads from the caller BENCH_NAME (the prefix of log lines), PIN, and in
# build ROOT and BUILD. On sourcing it sets:
#   SERVER_PIN, CLIENT_PIN  taskset prefixes (empty without pinning)
#   TMP                     a fresh temp dir, removed on exit with the server
#                           stopped first (EXIT trap)
# start_server sets SERVER_PID and PORT.

log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { log "$*"; exit 1; }

# build TARGET...: incremental build of just the programs the script runs, so
# a test file that does not compile yet does not stop the benchmark.
build() {
  if [[ ! -f $BUILD/CMakeCache.txt ]]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$BUILD" -j "$(nproc)" --target "$@" >/dev/null
}

# raise_fd_limit NEEDED: every connection is a descriptor in the server and
# another in rt_loadgen; both inherit this limit. Without privileges only the
# hard limit is reachable. Dies if fewer than NEEDED descriptors are allowed.
raise_fd_limit() {
  local need=$1 have
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  have=$(ulimit -n)
  if [[ $have != unlimited ]] && (( have < need )); then
    die "open-file limit is $have, need $need (raise the hard limit: ulimit -Hn)"
  fi
}

# With 2+ CPUs the server gets CPU 0 and the clients (rt_loadgen, the writer)
# CPU 1, so they do not compete for a core.
SERVER_PIN=()
CLIENT_PIN=()
if [[ $PIN == 1 ]] && command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
  SERVER_PIN=(taskset -c 0)
  CLIENT_PIN=(taskset -c 1)
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
# SIGKILL, exits non-zero or printed a sanitizer report fails the benchmark.
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

# start_server COMMAND [ARG...]: starts COMMAND ARG... --host 127.0.0.1
# --port 0 (pinned) and learns the port from its `listening on
# 127.0.0.1:PORT` line: no port guessing, no race. Dies if the line does not
# come within 10 s. The output files are created first: the background
# child opens its redirections only after the fork, and a first sed on a
# missing file would end the script (set -e, pipefail).
start_server() {
  : >"$TMP/server.out"
  : >"$TMP/server.err"
  "${SERVER_PIN[@]}" "$@" --host 127.0.0.1 --port 0 >"$TMP/server.out" 2>"$TMP/server.err" &
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

# field JSON KEY: the raw value of a top-level number in rt_loadgen's JSON line.
field() {
  sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1"
}

# median VALUE...: the median of the numbers given (the mean of the middle
# two for an even count); empty and `null` values are skipped, and `null` is
# printed when none is left. An odd count prints the middle value as given.
median() {
  printf '%s\n' "$@" | awk '$1 != "" && $1 != "null"' | sort -g |
    awk '{ v[NR] = $1 }
         END { if (!NR) print "null"; else if (NR % 2) print v[(NR + 1) / 2];
               else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
