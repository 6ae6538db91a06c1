# Burrow paths for ../shared/bench (sourced by its run.sh via BENCH_PATHS).
#
#   burrow  gateway + agent, WebSocket links over plain TCP (ws://), 2 links
#
# The binary is ${BURROW_BIN:-target/release/burrow}, relative to the
# repository root (run the harness from there). The key is generated per run.

BURROW_BIN="${BURROW_BIN:-$PWD/target/release/burrow}"

_burrow_psk() {
  if [ -z "${BURROW_BENCH_PSK:-}" ]; then
    BURROW_BENCH_PSK=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
  fi
}

# Waits until the gateway log shows the agent's links (the forward refuses
# connections until then).
_burrow_wait_links() {  # LOG SECS
  local log=$1 secs=${2:-10} i
  for i in $(seq 1 $((secs * 10))); do
    [ "$(grep -c 'agent link up' "$log" 2>/dev/null)" -ge 2 ] && return 0
    sleep 0.1
  done
  echo "burrow: agent links did not come up (see $log)" >&2
  return 1
}

path_burrow_describe() { echo "burrow $("$BURROW_BIN" --version 2>/dev/null | awk '{print $2}'), WebSocket transport without TLS (ws://), 2 links, pre-shared key"; }
path_burrow_start() {
  local pub=$1 back=$2
  _burrow_psk
  spawn_server burrow-gateway env BURROW_PSK="$BURROW_BENCH_PSK" "$BURROW_BIN" gateway \
    --listen "127.0.0.1:$CTRL_PORT" --forward "127.0.0.1:$pub=bench:127.0.0.1:$back" || return 1
  wait_listen "$CTRL_PORT" 10 || return 1
  spawn_client burrow-agent env BURROW_PSK="$BURROW_BENCH_PSK" "$BURROW_BIN" run \
    --connect-url "ws://127.0.0.1:$CTRL_PORT/tunnel" --agent-name bench --allow "127.0.0.1:$back" || return 1
  _burrow_wait_links "$PATH_DIR/burrow-gateway.log" 10
}
