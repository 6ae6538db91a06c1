# A/B paths for ../shared/bench (sourced beside burrow.sh): the same Burrow
# paths run a second build, ${BURROW_BIN_B} (e.g. the commit before a
# change), so both builds are measured interleaved in one run:
#
#   BURROW_BIN_B=/tmp/burrow-before BENCH_PATHS=$PWD/bench/paths.d \
#     ../shared/bench/run.sh direct rathole burrow burrow-b burrow-wss burrow-wss-b burrow-edge burrow-edge-b

_burrow_b() { BURROW_BIN="${BURROW_BIN_B:?set BURROW_BIN_B to the second build}" "$@"; }

path_burrow_b_describe() { echo "$(_burrow_b path_burrow_describe) [build B: ${BURROW_BIN_B:-unset}]"; }
path_burrow_b_start() { _burrow_b path_burrow_start "$@"; }

path_burrow_wss_b_describe() { echo "$(_burrow_b path_burrow_wss_describe) [build B]"; }
path_burrow_wss_b_start() { _burrow_b path_burrow_wss_start "$@"; }

path_burrow_edge_b_describe() { echo "$(_burrow_b path_burrow_edge_describe) [build B]"; }
path_burrow_edge_b_start() { _burrow_b path_burrow_edge_start "$@"; }
