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

# burrow-edge: visitors → the gateway's HTTP edge with Host routing (the
# mode behind Caddy: plain HTTP on the gateway's port, route "127.0.0.1"
# so wrk's Host header matches) → tunnel → the backend. The agent is
# registered with a key pair and dials the gateway as "localhost", so its
# own requests are not routed. Phases without an HTTP backend (iperf,
# hold) use the plain `burrow` path instead. Routes may not be named by an
# IP address (`add-route` refuses one), but wrk always sends `Host:
# 127.0.0.1`: the path writes that route straight into its own gateway's
# SQLite database, which the gateway reads within its 2 s sweep. The
# backend is on the agent's loopback, so the agent allows loopback.
# burrow-edge-hyper: the same, with HTTP/1.1 visitors served by the hyper
# path (BURROW_EDGE_HTTP1=hyper) instead of the pass-through one.
_burrow_edge_start() {  # PUB BACK
  local pub=$1 back=$2 admin url
  admin="bk_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  spawn_server burrow-gateway env BURROW_ADMIN_KEY="$admin" BURROW_DATA_DIR="$PATH_DIR/gw" \
    BURROW_EDGE_HTTP1="${BURROW_EDGE_HTTP1:-passthrough}" \
    BURROW_PROXY_LISTEN=off BURROW_EDGE_HTTP_LISTEN=off BURROW_EDGE_HTTPS_LISTEN=off \
    "$BURROW_BIN" gateway --no-tls --listen "127.0.0.1:$pub" || return 1
  wait_listen "$pub" 10 || return 1
  url="ws://localhost:$pub/connect"
  rm -f "$PATH_DIR/ConnectionAgent-bench.pem" "$PATH_DIR/ConnectionAgent-bench.pem.pub"
  "$BURROW_BIN" keygen --agent-name bench --out-dir "$PATH_DIR" >/dev/null || return 1
  CONNECT_URL="$url" BURROW_ADMIN_KEY="$admin" "$BURROW_BIN" register --agent-name bench --key-name k \
    --public-key "$PATH_DIR/ConnectionAgent-bench.pem.pub" > "$PATH_DIR/agent.env" || return 1
  python3 - "$PATH_DIR/gw/burrow.db" "http://127.0.0.1:$back" <<'PY' || return 1
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
now = int(time.time() * 1e6)
db.execute("INSERT OR REPLACE INTO routes (hostname, agent, target, created_at, updated_at) VALUES ('127.0.0.1', 'bench', ?, ?, ?)", (sys.argv[2], now, now))
db.commit()
PY
  # shellcheck disable=SC2046
  spawn_client burrow-agent env $(grep -v '^AUTH_SERVER_DOMAIN=' "$PATH_DIR/agent.env") \
    AUTH_SERVER_DOMAIN="http://localhost:$pub" AUTH_SERVER_PRIVATE_KEY_PEM_PATH="$PATH_DIR/ConnectionAgent-bench.pem" \
    BURROW_ALLOW_LOOPBACK=true BURROW_DATA_DIR="$PATH_DIR/agent" "$BURROW_BIN" run || return 1
  _burrow_wait_links "$PATH_DIR/burrow-gateway.log" 10 || return 1
  local i
  for i in $(seq 1 50); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$pub/small.bin")" = 200 ] && return 0
    sleep 0.2
  done
  echo "burrow-edge: the route did not come up" >&2
  return 1
}

path_burrow_edge_describe() { echo "burrow $(_burrow_version), HTTP edge with Host routing (plain HTTP, as behind Caddy) → ws:// tunnel, key-pair agent, 2 links; iperf and hold phases: plain burrow"; }
path_burrow_edge_start() {
  if [ "$2" = "${BACK_HTTP:-18080}" ]; then _burrow_edge_start "$1" "$2"; else _burrow_start ws "$1" "$2"; fi
}

path_burrow_edge_hyper_describe() { echo "burrow $(_burrow_version), as burrow-edge with HTTP/1.1 visitors on the hyper path (BURROW_EDGE_HTTP1=hyper)"; }
path_burrow_edge_hyper_start() { BURROW_EDGE_HTTP1=hyper path_burrow_edge_start "$@"; }
