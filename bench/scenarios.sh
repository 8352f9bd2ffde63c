# shellcheck shell=bash
# The scenarios of issue 6, shared by compare.sh and profile.sh (sourced after
# lib.sh). Reads WARMUP, DURATION and IDLE_CONNECTIONS.

# scenario_args X: rt_loadgen's options for scenario X, into the array ARGS.
scenario_args() {
  local fanout=(--subscribers 1000 --payload 64 --warmup "$WARMUP" --duration "$DURATION")
  case $1 in
    A) ARGS=("${fanout[@]}" --channels 1 --publishers 1 --window 64 --rate 0) ;;
    B) ARGS=("${fanout[@]}" --channels 1 --publishers 1 --rate 1000) ;;
    C) ARGS=("${fanout[@]}" --channels 500 --publishers 10 --window 64 --rate 0) ;;
    D) ARGS=(--idle --connections "$IDLE_CONNECTIONS" --duration "$DURATION") ;;
    E) ARGS=("${fanout[@]}" --channels 1 --publishers 1 --rate 100) ;;
    *) die "unknown scenario '$1' (known: A B C D E)" ;;
  esac
}
