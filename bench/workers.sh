#!/usr/bin/env bash
# Scaling over cores (issue 6, part 4): a scenario of compare.sh (default A:
# 1 publisher, 1,000 subscribers on one channel, 64-byte payloads, 64
# publishes in flight; bench/scenarios.sh) against realtimed with
# --workers 1 and with --workers 2, REPS times each, alternating, and a
# markdown table of the medians.
#
# Nothing is pinned: the server may use every core, and so does rt_loadgen,
# which on a 2-core machine competes with a 2-worker server for the same
# cores. The table shows rt_loadgen's CPU next to the server's so that a run
# limited by the load generator is visible as such.
#
# Knobs (environment): SCENARIO (A; A, B, C or E), WORKERS ("1 2"), REPS (3),
# DURATION (5 s measured per run), WARMUP (2 s), BUILD (build/release),
# LOADGEN ($BUILD/rt_loadgen), OUT ($BUILD/workers.md), JSON_OUT (file to
# append every run's JSON line to). Exits non-zero if a run lost a message or
# a server did not exit cleanly.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
LOADGEN=${LOADGEN:-$BUILD/rt_loadgen}
WORKERS=${WORKERS:-1 2}
REPS=${REPS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
SCENARIO=${SCENARIO:-A}
OUT=${OUT:-$BUILD/workers.md}
JSON_OUT=${JSON_OUT:-}
PIN=0 # the point is to let the server use several cores
BENCH_NAME=workers

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=scenarios.sh
. "$(dirname "$0")/scenarios.sh"

FAILURES=()
mkdir -p "$TMP/runs"

# run_one N REP: a fresh realtimed with N workers, one rt_loadgen run.
run_one() {
  local n=$1 rep=$2 status=0 json out=$TMP/run.out
  start_server "$BUILD/realtimed" --workers "$n"
  scenario_args "$SCENARIO"
  timeout $((WARMUP + DURATION + 90)) "$LOADGEN" --host 127.0.0.1 --port "$PORT" \
    --server-pid "$SERVER_PID" --label "workers-$n/$rep" --json "${ARGS[@]}" \
    >"$out" 2>"$TMP/run.err" || status=$?
  stop_server || FAILURES+=("workers $n rep $rep: server did not exit cleanly")
  json=$(grep '^{' "$out" || true)
  if (( status != 0 )) || [[ -z $json ]]; then
    FAILURES+=("workers $n rep $rep: rt_loadgen exit status $status")
    cat "$out" "$TMP/run.err" >&2
    return 0
  fi
  printf '%s\n' "$json" >"$TMP/runs/$n.$rep"
  [[ -z $JSON_OUT ]] || printf '%s\n' "$json" >>"$JSON_OUT"
  [[ $(field "$json" loss) == 0 ]] || FAILURES+=("workers $n rep $rep: loss $(field "$json" loss)")
  log "workers $n rep $rep: $(field "$json" delivered_per_s) delivered/s," \
      "server CPU $(field "$json" server_cpu_us_per_delivery) us/delivery," \
      "loadgen CPU $(field "$json" loadgen_cpu_pct) %"
}

# med N KEY: the median of KEY over N workers' runs.
med() {
  local -a v=()
  local f
  for f in "$TMP/runs/$1".*; do [[ -f $f ]] && v+=("$(field "$(<"$f")" "$2")"); done
  median "${v[@]}"
}

fmt() { if [[ -z $1 || $1 == null ]]; then echo n/a; else awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f\n", d, v }'; fi; }

table() {
  local -a ns
  read -r -a ns <<<"$WORKERS"
  local head="| figure |" rule="|---|" n spec key label dec row
  for n in "${ns[@]}"; do head+=" --workers $n |"; rule+="---:|"; done
  printf '%s\n%s\n' "$head" "$rule"
  for spec in "delivered_per_s|delivered/s|0" "server_cpu_us_per_delivery|server CPU per delivery (us)|3" \
              "latency_p50_us|latency p50 (us)|0" "latency_p99_us|latency p99 (us)|0" \
              "loadgen_cpu_pct|loadgen CPU (% of one core)|1" "loss|loss|0"; do
    IFS='|' read -r key label dec <<<"$spec"
    row="| $label |"
    for n in "${ns[@]}"; do row+=" $(fmt "$(med "$n" "$key")" "$dec") |"; done
    printf '%s\n' "$row"
  done
}

main() {
  if [[ ! -x $BUILD/realtimed || ! -x $LOADGEN || $LOADGEN == "$BUILD/rt_loadgen" ]]; then
    build realtimed rt_loadgen
  fi
  [[ $SCENARIO != D ]] || die "scenario D measures memory, not scaling"
  raise_fd_limit 1300
  for rep in $(seq "$REPS"); do
    for n in $WORKERS; do run_one "$n" "$rep"; done
  done
  {
    printf '# Scenario %s over workers (bench/workers.sh)\n\n' "$SCENARIO"
    printf '%s CPUs, nothing pinned; medians of %s runs of %s s; %s\n\n' "$(nproc)" "$REPS" \
      "$DURATION" "$("$BUILD/realtimed" --version)"
    table
  } | tee "$OUT"
  if (( ${#FAILURES[@]} > 0 )); then
    printf '%s\n' "${FAILURES[@]}" >&2
    exit 1
  fi
}

main "$@"
