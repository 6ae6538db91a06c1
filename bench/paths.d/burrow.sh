# Burrow paths for ../shared/bench (sourced by its run.sh via BENCH_PATHS).
#
#   burrow      gateway + agent, WebSocket links over plain TCP (ws://), 2 links
#   burrow-wss  the same over TLS (wss://), gateway certificate pinned
#   burrow-tls  Burrow frames straight over TLS (tls://), pinned
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

_burrow_version() { "$BURROW_BIN" --version 2>/dev/null | awk '{print $2}'; }

# Starts gateway and agent; SCHEME is ws, wss or tls.
_burrow_start() {  # SCHEME PUB BACK
  local scheme=$1 pub=$2 back=$3 url pin=() tls=()
  _burrow_psk
  [ "$scheme" = ws ] && tls=(--no-tls)
  spawn_server burrow-gateway env BURROW_PSK="$BURROW_BENCH_PSK" BURROW_DATA_DIR="$PATH_DIR/gw" BURROW_PROXY_LISTEN=off BURROW_EDGE_HTTP_LISTEN=off BURROW_EDGE_HTTPS_LISTEN=off \
    "$BURROW_BIN" gateway "${tls[@]}" \
    --listen "127.0.0.1:$CTRL_PORT" --forward "127.0.0.1:$pub=bench:127.0.0.1:$back" || return 1
  wait_listen "$CTRL_PORT" 10 || return 1
  case $scheme in
    ws)  url="ws://127.0.0.1:$CTRL_PORT/tunnel" ;;
    wss) url="wss://127.0.0.1:$CTRL_PORT/tunnel" ;;
    tls) url="tls://127.0.0.1:$CTRL_PORT" ;;
  esac
  if [ "$scheme" != ws ]; then
    pin=(--gateway-thumbprint "$("$BURROW_BIN" thumbprint --data-dir "$PATH_DIR/gw" | awk '{print $1}')")
  fi
  spawn_client burrow-agent env BURROW_PSK="$BURROW_BENCH_PSK" BURROW_DATA_DIR="$PATH_DIR/agent" \
    "$BURROW_BIN" run "${pin[@]}" \
    --connect-url "$url" --agent-name bench --allow "127.0.0.1:$back" || return 1
  _burrow_wait_links "$PATH_DIR/burrow-gateway.log" 10
}

path_burrow_describe() { echo "burrow $(_burrow_version), WebSocket transport without TLS (ws://), 2 links, pre-shared key"; }
path_burrow_start() { _burrow_start ws "$1" "$2"; }

path_burrow_wss_describe() { echo "burrow $(_burrow_version), WebSocket over TLS 1.3 (wss://), gateway pinned by thumbprint, 2 links, pre-shared key"; }
path_burrow_wss_start() { _burrow_start wss "$1" "$2"; }

path_burrow_tls_describe() { echo "burrow $(_burrow_version), raw TLS 1.3 carrier (tls://), gateway pinned by thumbprint, 2 links, pre-shared key"; }
path_burrow_tls_start() { _burrow_start tls "$1" "$2"; }
