#!/usr/bin/env bash
# Side-by-side comparison of issue 6: realtimed against two reference servers
# speaking the same protocol v1 core (bench/peers/): Node + npm ws, and Bun's
# native pub/sub (uWebSockets). For every repetition, scenario and server it
# starts a fresh server pinned to CPU 0, drives it with rt_loadgen pinned to
# CPU 1, and stops it (SIGTERM, exit 0). Scenarios:
#   A  1 publisher, 1,000 subscribers on 1 channel, 64 publishes in flight
#   B  the same at 1,000 publishes/s
#   C  10 publishers, 1,000 subscribers over 500 channels, 64 in flight each
#   D  10,000 idle connections, each subscribed to its own channel
#   E  the same as B at 100 publishes/s
# (64-byte payloads). Then writes a markdown table of the medians over the
# repetitions, with each server's ratio to Bun, to OUT and to stdout.
# Exits non-zero if any run lost a message, dropped a connection, got an
# error frame, or a server did not exit cleanly.
#
# Knobs (environment): REPS (3 repetitions), DURATION (10 s measured per
# fan-out run, and the hold of D), WARMUP (2 s), IDLE_CONNECTIONS (10000),
# SERVERS ("realtimed node-ws bun"), SCENARIOS ("A B C D E"), PIN (1),
# BUILD (build/release), LOADGEN ($BUILD/rt_loadgen), OUT ($BUILD/compare.md),
# JSON_OUT (file to append every run's JSON line to).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
LOADGEN=${LOADGEN:-$BUILD/rt_loadgen}
REPS=${REPS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
SERVERS=${SERVERS:-realtimed node-ws bun}
SCENARIOS=${SCENARIOS:-A B C D E}
PIN=${PIN:-1}
OUT=${OUT:-$BUILD/compare.md}
JSON_OUT=${JSON_OUT:-}
BENCH_NAME=compare
BUN=$ROOT/bench/node_modules/.bin/bun

# log, die, build, raise_fd_limit, pinning, TMP, start/stop_server, field,
# median; scenario_args.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=scenarios.sh
. "$(dirname "$0")/scenarios.sh"

FAILURES=()

# server_cmd NAME: the command line of a server, into the array CMD.
server_cmd() {
  case $1 in
    realtimed) CMD=("$BUILD/realtimed" --workers 1) ;; # one core: pinned like the others
    node-ws) CMD=(node "$ROOT/bench/peers/node-ws.mjs") ;;
    bun) CMD=("$BUN" "$ROOT/bench/peers/bun-topics.mjs") ;;
    *) die "unknown server '$1' (known: realtimed node-ws bun)" ;;
  esac
}

# run_one SERVER SCENARIO REP: one fresh server, one rt_loadgen run bounded
# by `timeout`; keeps its JSON line in $TMP/runs/SERVER.SCENARIO.REP.
run_one() {
  local server=$1 sc=$2 rep=$3 status=0 json out=$TMP/run.out limit
  server_cmd "$server"
  scenario_args "$sc"
  limit=$((WARMUP + DURATION + 90))
  start_server "${CMD[@]}"
  local core=()
  (( ${#SERVER_PIN[@]} )) && core=(--server-core 0)
  timeout "$limit" "${CLIENT_PIN[@]}" "$LOADGEN" --host 127.0.0.1 --port "$PORT" \
    --server-pid "$SERVER_PID" "${core[@]}" --label "$server/$sc/$rep" --json "${ARGS[@]}" \
    >"$out" 2>"$TMP/run.err" || status=$?
  stop_server || FAILURES+=("$server $sc rep $rep: server did not exit cleanly")
  json=$(grep '^{' "$out" || true)
  if [[ -n $json ]]; then
    printf '%s\n' "$json" >"$TMP/runs/$server.$sc.$rep"
    [[ -z $JSON_OUT ]] || printf '%s\n' "$json" >>"$JSON_OUT"
  fi
  if (( status != 0 )) || [[ -z $json ]]; then
    FAILURES+=("$server $sc rep $rep: rt_loadgen exit status $status")
    log "$server $sc rep $rep: FAILED (rt_loadgen exit status $status); its output:"
    cat "$out" "$TMP/run.err" >&2
    return 0
  fi
  if [[ $sc == D ]]; then
    log "$server $sc rep $rep: $(field "$json" server_rss_per_conn_bytes) B/connection"
  else
    log "$server $sc rep $rep: $(field "$json" delivered_per_s) delivered/s," \
        "p99 $(field "$json" latency_p99_us) us, loss $(field "$json" loss)," \
        "loadgen CPU $(field "$json" loadgen_cpu_pct) %"
  fi
}

# values SERVER SCENARIO KEY: the KEY of every repetition's JSON line.
values() {
  local f
  for f in "$TMP/runs/$1.$2".*; do
    [[ -f $f ]] && field "$(<"$f")" "$3"
  done
}

# aggregate SERVER SCENARIO KEY HOW: the median of the repetitions, or with
# HOW=max the largest value (for counts that must be zero).
aggregate() {
  local -a v
  mapfile -t v < <(values "$1" "$2" "$3")
  if [[ $4 == max ]]; then
    printf '%s\n' "${v[@]}" | awk '$1 != "" && $1 != "null"' | sort -g | tail -n 1 | grep . || echo null
  else
    median "${v[@]}"
  fi
}

# Figures per row: KEY|LABEL|DECIMALS|HOW (median or max)|BETTER.
FANOUT_FIGURES=(
  "delivered_per_s|delivered/s|0|median|higher"
  "loss|loss (max over reps; must be 0)|0|max|0"
  "server_cpu_us_per_delivery|server CPU per delivery (us)|3|median|lower"
  "server_core_us_per_delivery|server core (CPU 0) busy per delivery, incl. softirq (us)|3|median|lower"
  "latency_p50_us|latency p50 (us)|0|median|lower"
  "latency_p99_us|latency p99 (us)|0|median|lower"
  "latency_max_us|latency max (us)|0|median|lower"
  "loadgen_cpu_pct|loadgen CPU (% of one core)|1|median|-"
  "other_cpu_s|other processes' CPU (s; noise)|2|median|-"
)
IDLE_FIGURES=(
  "server_rss_per_conn_bytes|server RSS per idle connection (B)|0|median|lower"
  "dropped|connections dropped (max; must be 0)|0|max|0"
)
declare -A TITLE=(
  [A]="A fan-out at saturation (1 pub, 1,000 subs, window 64)"
  [B]="B fan-out at 1,000 msg/s to 1,000 subs"
  [C]="C 1,000 subs over 500 channels, 10 pubs, window 64"
  [D]="D $IDLE_CONNECTIONS idle connections, one channel each"
  [E]="E fan-out at 100 msg/s to 1,000 subs"
)

# fmt VALUE DECIMALS: a number with DECIMALS digits, or "n/a".
fmt() {
  if [[ -z $1 || $1 == null ]]; then echo n/a; else awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f\n", d, v }'; fi
}

# ratio VALUE BUN: VALUE / BUN to 2 decimals, or "-" when undefined.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "null" || b == "null" || a == "" || b == "" || b + 0 == 0) print "-";
                                   else printf "%.2f\n", a / b }'
}

table() {
  local -a servers
  read -r -a servers <<<"$SERVERS"
  local head="| scenario | figure | better |" rule="|---|---|---|" s sc spec
  for s in "${servers[@]}"; do head+=" $s |"; rule+="---:|"; done
  for s in "${servers[@]}"; do
    [[ $s == bun ]] || { head+=" $s / bun |"; rule+="---:|"; }
  done
  printf '%s\n%s\n' "$head" "$rule"
  for sc in $SCENARIOS; do
    local -a figures=("${FANOUT_FIGURES[@]}")
    local title=${TITLE[$sc]}
    [[ $sc == D ]] && figures=("${IDLE_FIGURES[@]}")
    for spec in "${figures[@]}"; do
      local key label dec how better row bunv
      IFS='|' read -r key label dec how better <<<"$spec"
      bunv=null
      [[ " $SERVERS " == *" bun "* ]] && bunv=$(aggregate bun "$sc" "$key" "$how")
      row="| ${title:+**$title**} | $label | $better |"
      title=
      for s in "${servers[@]}"; do row+=" $(fmt "$(aggregate "$s" "$sc" "$key" "$how")" "$dec") |"; done
      for s in "${servers[@]}"; do
        [[ $s == bun ]] && continue
        if [[ $how == max ]]; then row+=" - |"; else row+=" $(ratio "$(aggregate "$s" "$sc" "$key" "$how")" "$bunv") |"; fi
      done
      printf '%s\n' "$row"
    done
  done
}

versions() {
  local ws bun realtimed
  ws=$(cd "$ROOT/bench" && node -p "require('ws/package.json').version" 2>/dev/null || echo n/a)
  bun=$("$BUN" --version 2>/dev/null || echo n/a)
  realtimed=$("$BUILD/realtimed" --version 2>/dev/null | head -n 1 || echo n/a)
  printf '%s; node %s; ws %s; bun %s; Linux %s; %s CPUs (%s)\n' "$realtimed" \
    "$(node --version)" "$ws" "$bun" "$(uname -r)" "$(nproc)" \
    "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
}

report() {
  printf '# realtimed vs Node ws vs Bun (bench/compare.sh)\n\n'
  # shellcheck disable=SC2016  # the backquotes are markdown
  printf 'Command: `REPS=%s DURATION=%s WARMUP=%s IDLE_CONNECTIONS=%s bash bench/compare.sh`, %s.\n\n' \
    "$REPS" "$DURATION" "$WARMUP" "$IDLE_CONNECTIONS" "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'Versions: %s\n' "$(versions)"
  local pin="none (PIN=0 or fewer than 2 CPUs)"
  (( ${#SERVER_PIN[@]} )) && pin="server on CPU 0, rt_loadgen on CPU 1 (taskset)"
  printf 'Pinning: %s. Medians of %s repetition(s); a fresh server for every run. ' "$pin" "$REPS"
  printf 'Ratios are to Bun (below 1 is better for "lower" figures, above 1 for "higher").\n\n'
  table
  if (( ${#FAILURES[@]} )); then
    printf '\nFailed runs:\n'
    printf -- '- %s\n' "${FAILURES[@]}"
  fi
}

main() {
  local sc s rep i
  bash "$ROOT/bench/install-peers.sh"
  if [[ $LOADGEN == "$BUILD/rt_loadgen" ]]; then
    build realtimed rt_loadgen
  fi
  for sc in $SCENARIOS; do scenario_args "$sc"; done
  for s in $SERVERS; do server_cmd "$s"; done
  raise_fd_limit $((IDLE_CONNECTIONS + 100))
  mkdir -p "$TMP/runs" "$(dirname "$OUT")"
  local -a servers
  read -r -a servers <<<"$SERVERS"
  # Servers take turns inside each scenario, starting one further each
  # repetition, so slow drifts of the machine hit them alike.
  for ((rep = 1; rep <= REPS; rep++)); do
    for sc in $SCENARIOS; do
      for ((i = 0; i < ${#servers[@]}; i++)); do
        run_one "${servers[(i + rep - 1) % ${#servers[@]}]}" "$sc" "$rep"
      done
    done
  done
  report | tee "$OUT"
  log "table written to $OUT"
  for s in $SERVERS; do
    for sc in $SCENARIOS; do
      local key=loss how
      [[ $sc == D ]] && key=dropped
      how=$(aggregate "$s" "$sc" "$key" max)
      [[ $how == 0 || $how == null ]] || FAILURES+=("$s $sc: $key $how")
    done
  done
  if (( ${#FAILURES[@]} )); then
    die "FAIL: ${#FAILURES[@]} problem(s)"
  fi
  log "PASS: no loss, no drop, every server exited cleanly"
}

main "$@"
