#!/usr/bin/env bash
# Egress proxy vs fixed forward, in one run, on loopback: the same gateway
# and agent carry a fixed forward (plain TCP to the forward's port) and the
# egress proxy (HTTP CONNECT to a private name the agent resolves), to the
# same echo and sink servers. The load client is bench's `proxyload`
# (iperf3 and wrk cannot speak CONNECT).
#   bench/egress.sh [REPS]         (default 3; SECONDS=4 per measurement)
# Prints each rep and the proxy/forward ratio of the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
SECS=${SECONDS_EACH:-4}
cargo build -q --release -p burrow -p burrow-bench
BIN=target/release/burrow
LOAD=target/release/proxyload
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

"$LOAD" serve > "$WORK/targets" & 
for _ in $(seq 50); do [ -s "$WORK/targets" ] && break; sleep 0.1; done
ECHO=$(sed -n 's/.*echo=\([0-9]*\).*/\1/p' "$WORK/targets")
SINK=$(sed -n 's/.*sink=\([0-9]*\).*/\1/p' "$WORK/targets")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CTRL=$(free_port); PROXY=$(free_port); FWD_ECHO=$(free_port); FWD_SINK=$(free_port)
export BURROW_DATA_DIR="$WORK/gw" BURROW_LOG_FORMAT=text BURROW_EDGE_HTTP_LISTEN=off BURROW_EDGE_HTTPS_LISTEN=off
ADMIN="bk_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
BURROW_ADMIN_KEY=$ADMIN "$BIN" gateway --listen 127.0.0.1:$CTRL --proxy-listen 127.0.0.1:$PROXY \
  --forward 127.0.0.1:$FWD_ECHO=bench:127.0.0.1:$ECHO --forward 127.0.0.1:$FWD_SINK=bench:127.0.0.1:$SINK \
  2>"$WORK/gw.log" >/dev/null &
for _ in $(seq 50); do grep -q 'egress proxy listening' "$WORK/gw.log" && break; sleep 0.1; done
export CONNECT_URL=wss://127.0.0.1:$CTRL/connect BURROW_ADMIN_KEY=$ADMIN
export GATEWAY_THUMBPRINT; GATEWAY_THUMBPRINT=$("$BIN" thumbprint | awk '/gateway-cert/{print $1}')
"$BIN" keygen --agent-name bench --out-dir "$WORK" >/dev/null
"$BIN" register --agent-name bench --key-name k --public-key "$WORK/ConnectionAgent-bench.pem.pub" > "$WORK/env"
"$BIN" add-fqdn --agent-name bench --fqdn echo.bench.internal >/dev/null
"$BIN" add-fqdn --agent-name bench --fqdn sink.bench.internal >/dev/null
(
  set -a; . "$WORK/env"; set +a
  unset BURROW_ADMIN_KEY
  BURROW_DATA_DIR="$WORK/agent" AUTH_SERVER_PRIVATE_KEY_PEM_PATH="$WORK/ConnectionAgent-bench.pem" \
    exec "$BIN" run --allow 127.0.0.1:$ECHO --allow 127.0.0.1:$SINK \
      --map-host echo.bench.internal=127.0.0.1,sink.bench.internal=127.0.0.1 2>"$WORK/agent.log"
) &
for _ in $(seq 100); do grep -q 'links=2' "$WORK/gw.log" && break; sleep 0.1; done

for r in $(seq "$REPS"); do
  f=$("$LOAD" run --seconds "$SECS" --echo 127.0.0.1:$FWD_ECHO --sink 127.0.0.1:$FWD_SINK)
  p=$("$LOAD" run --seconds "$SECS" --echo 0.0.0.0:1 --sink 0.0.0.0:1 --proxy 127.0.0.1:$PROXY \
      --echo-name echo.bench.internal:$ECHO --sink-name sink.bench.internal:$SINK)
  echo "rep $r forward $f"; echo "rep $r proxy   $p"
  echo "$f" >> "$WORK/fwd"; echo "$p" >> "$WORK/proxy"
done
python3 - "$WORK/fwd" "$WORK/proxy" <<'PY'
import json, statistics, sys
f = [json.loads(l) for l in open(sys.argv[1])]
p = [json.loads(l) for l in open(sys.argv[2])]
print()
print("| measure | fixed forward | egress proxy (CONNECT) | proxy / forward |")
print("|---|---:|---:|---:|")
for k, label in [("bulk_gbps", "bulk, 1 connection (Gbit/s)"), ("keepalive_rps", "64 B round trips, 16 connections (req/s)"), ("newconn_rps", "new connection + 1 round trip, 16 workers (conn/s)")]:
    fm = statistics.median(x[k] for x in f); pm = statistics.median(x[k] for x in p)
    print(f"| {label} | {fm:,.2f} | {pm:,.2f} | {pm / fm:.2f}x |")
PY
