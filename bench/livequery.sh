#!/usr/bin/env bash
# Live-query benchmark (issue 5): 1,000 subscribers on 10 distinct queries
# (one named query, 10 param values: 10 instances of 100 subscribers), while
# another process commits 100 times a second for 10 s. Reports change-to-push
# latency (p50/p99/max) and the server's query evaluations per commit.
#
# The database is a fresh temp file with
#   events(id INTEGER PRIMARY KEY, grp INTEGER NOT NULL, ts INTEGER NOT NULL)
# and the query is
#   SELECT id, grp, ts FROM events WHERE grp = $1 ORDER BY id DESC LIMIT 5
# Subscriber i subscribes with params [i % 10]. rt_lq_writer commit i inserts
# a row with grp = i % 10 and ts = CLOCK_MONOTONIC ns; rt_loadgen records
# receipt time - ts for every row a push shows it for the first time.
# Exits non-zero if a run got an error frame, lost a connection, missed a
# change, saw a row of another param, or the server did not exit cleanly.
#
# Knobs (environment): SUBSCRIBERS (1000), PARAMS (10), RATE (100 commits/s),
# DURATION (10 s of commits), OP (insert | update), POLL_MS (database
# pollInterval, 50), SYNC (writer's PRAGMA synchronous, normal), PIN (1:
# server on CPU 0, rt_loadgen and the writer on CPU 1, with 2+ CPUs),
# BUILD (build/release), REALTIMED / LOADGEN / WRITER (programs; the script
# builds them in $BUILD unless all three are given), JSON_OUT (file to
# append the JSON line to).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
REALTIMED=${REALTIMED:-$BUILD/realtimed}
LOADGEN=${LOADGEN:-$BUILD/rt_loadgen}
WRITER=${WRITER:-$BUILD/rt_lq_writer}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
PARAMS=${PARAMS:-10}
RATE=${RATE:-100}
DURATION=${DURATION:-10}
OP=${OP:-insert}
POLL_MS=${POLL_MS:-50}
SYNC=${SYNC:-normal}
PIN=${PIN:-1}
JSON_OUT=${JSON_OUT:-}
BENCH_NAME=livequery
# The server is pinned to one CPU: one worker, unless REALTIME_WORKERS says
# otherwise (bench/workers.sh measures several).
export REALTIME_WORKERS=${REALTIME_WORKERS:-1}

# log, die, build, raise_fd_limit, pinning, TMP, start_server, stop_server, field.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

# The server creates the database file and runs `setup` at start, so the
# table (and its change-tracking triggers, once subscribed) exist before the
# writer opens the file. Setup seeds 5 rows per param with ts = 0, so every
# result starts full (the subscribe ack carries 5 rows) and --op update has
# a row to update in every group.
write_config() {
  cat >"$TMP/config.json" <<JSON
{
  "database": {
    "path": "$TMP/bench.db",
    "pollInterval": $POLL_MS,
    "setup": "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, grp INTEGER NOT NULL, ts INTEGER NOT NULL); WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $((PARAMS * 5 - 1))) INSERT INTO events (grp, ts) SELECT i % $PARAMS, 0 FROM n WHERE NOT EXISTS (SELECT 1 FROM events)"
  },
  "queries": {
    "recent_events": {
      "sql": "SELECT id, grp, ts FROM events WHERE grp = \$1 ORDER BY id DESC LIMIT 5"
    }
  }
}
JSON
}

main() {
  if [[ $REALTIMED == "$BUILD/realtimed" || $LOADGEN == "$BUILD/rt_loadgen" ||
        $WRITER == "$BUILD/rt_lq_writer" ]]; then
    build realtimed rt_loadgen rt_lq_writer
  fi
  raise_fd_limit $((SUBSCRIBERS + 100))
  write_config
  start_server "$REALTIMED" --config "$TMP/config.json"
  log "server pid $SERVER_PID on port $PORT${SERVER_PIN:+ (server CPU 0, rt_loadgen and writer CPU 1)}"
  local writer status=0 json
  writer="$WRITER --db $TMP/bench.db --groups $PARAMS --rate $RATE --duration $DURATION --op $OP"
  writer+=" --synchronous $SYNC"
  printf '\n== livequery: %s subscribers, %s params, %s commits/s (%s) for %s s\n' \
    "$SUBSCRIBERS" "$PARAMS" "$RATE" "$OP" "$DURATION"
  timeout 50 "${CLIENT_PIN[@]}" "$LOADGEN" --host 127.0.0.1 --port "$PORT" \
    --server-pid "$SERVER_PID" --label livequery --json \
    --subscribers "$SUBSCRIBERS" --query recent_events --query-params-count "$PARAMS" \
    --ts-column ts --param-column grp --duration $((DURATION + 15)) --drain 5 \
    --writer-cmd "$writer" >"$TMP/loadgen.out" || status=$?
  grep -v '^{' "$TMP/loadgen.out" || true
  json=$(grep '^{' "$TMP/loadgen.out" || true)
  [[ -z $JSON_OUT || -z $json ]] || printf '%s\n' "$json" >>"$JSON_OUT"
  if [[ -n $json ]]; then
    printf '\n%10s %10s %10s %10s %10s %12s %10s %12s\n' commits/s pushes p50_us p99_us max_us \
      evals/commit instances other_cpu_s
    printf '%10s %10s %10s %10s %10s %12s %10s %12s\n' "$(field "$json" commits_per_s)" \
      "$(field "$json" pushes)" "$(field "$json" latency_p50_us)" "$(field "$json" latency_p99_us)" \
      "$(field "$json" latency_max_us)" "$(field "$json" evaluations_per_commit)" \
      "$(field "$json" instances)" "$(field "$json" other_cpu_s)"
  fi
  local failed=0
  if (( status != 0 )); then
    log "rt_loadgen exit status $status"
    failed=1
  fi
  stop_server || failed=1
  (( failed == 0 )) || die "FAIL"
  log "PASS"
}

main "$@"
