#!/usr/bin/env bash
# Reconnect storm (loopback only): AGENTS simulated agents in one process
# (bench/src/bin/storm.rs: raw TLS, pre-shared key, the agent's backoff
# with the gateway's Retry-After honoured) hold one link each; the gateway
# restarts (SIGTERM, start again on the same port); reports the time until
# every agent is connected again, the new gateway's CPU time and peak
# memory over the storm, and the agents' dial failures meanwhile.
#   cargo build --release -p burrow -p burrow-bench
#   bench/storm.sh [AGENTS] [MAX_HANDSHAKES]     (defaults: 1000, 256)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
CAP=${2:-256}
BIN=${BURROW_BIN:-$PWD/target/release/burrow}
STORM=${STORM_BIN:-$PWD/target/release/storm}
PORT=${PORT:-18471}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
ulimit -n "$(ulimit -Hn)"
umask 077
openssl rand -hex 32 > "$WORK/psk"
mkdir -p "$WORK/gw"

start_gw() {  # LOG
  BURROW_DATA_DIR="$WORK/gw" BURROW_PSK_FILE="$WORK/psk" BURROW_LOG_FORMAT=json \
    "$BIN" gateway --listen 127.0.0.1:$PORT --proxy-listen off \
      --edge-https-listen off --edge-http-listen off --max-handshakes "$CAP" \
      --max-connections-per-address $((N * 2)) --tunnel-max-connections $((N * 4)) \
      2> "$1" &
  GW=$!
  for _ in $(seq 100); do grep -q tunnel_listening "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "the gateway did not start: $(tail -3 "$1")" >&2; exit 1
}

start_gw "$WORK/gw1.log"
THUMB=$(grep -o '"thumbprint":"[0-9A-F]*"' "$WORK/gw1.log" | head -1 | cut -d'"' -f4)
"$STORM" --url "tls://127.0.0.1:$PORT" --thumbprint "$THUMB" --psk-file "$WORK/psk" \
  --agents "$N" --delay 1 > "$WORK/storm.out" 2> "$WORK/storm.err" &
STORM_PID=$!
for _ in $(seq 600); do grep -q "connected in" "$WORK/storm.out" && break; sleep 0.1; done
grep "connected in" "$WORK/storm.out" || { echo "agents did not connect: $(tail -3 "$WORK/storm.err")" >&2; exit 1; }
sleep 1
kill -TERM "$GW"; wait "$GW" || true
start_gw "$WORK/gw2.log"
T0=$(date +%s.%N)
PEAK=0
while kill -0 "$STORM_PID" 2>/dev/null; do
  RSS=$(awk '/VmRSS/ {print $2}' "/proc/$GW/status" 2>/dev/null || echo 0)
  [ "$RSS" -gt "$PEAK" ] && PEAK=$RSS
  sleep 0.05
done
T1=$(date +%s.%N)
TICKS=$(awk '{print $14 + $15}' "/proc/$GW/stat")
HZ=$(getconf CLK_TCK)
RESULT=$(tail -1 "$WORK/storm.out")
echo "$RESULT"
awk -v t="$TICKS" -v hz="$HZ" -v w="$(echo "$T1 - $T0" | bc)" -v p="$PEAK" -v n="$N" -v cap="$CAP" 'BEGIN {
  printf "gateway over the storm (%d agents, --max-handshakes %d): %.2f s CPU in %.2f s wall (%.0f%% of one core), peak RSS %.1f MiB\n", n, cap, t / hz, w, 100 * t / hz / w, p / 1024 }'
BUSY=$(grep -c '"reason":"busy"\|handshakes under way' "$WORK/gw2.log" || true)
echo "gateway log lines about the cap: $BUSY"
