#!/usr/bin/env bash
# Quick end-to-end ratio check, direct vs burrow in one run (loopback only):
# iperf3 1 stream, 8 streams, and wrk keep-alive and Connection: close against nginx.
#   bench/quick.sh [REPS]      (needs iperf3, wrk, nginx: ../shared/bench/setup.sh)
#   SCHEME=tls|wss|ws bench/quick.sh   carrier (default tls; ws runs the gateway --no-tls)
# Prints one line per measurement and the burrow/direct ratio. For the full
# comparison with rathole, bore and ssh use ../shared/bench/run.sh (README).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BURROW_BIN:-target/release/burrow}
REPS=${1:-3}
T=${IPERF_T:-4}
D=${WRK_D:-5}
BACK_IPERF=15311; PUB_IPERF=25311; BACK_HTTP=18311; PUB_HTTP=28311; CTRL=23311
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

# shellcheck source=bench/nginx.sh
. bench/nginx.sh
start_nginx "$WORK" $BACK_HTTP
iperf3 -s -p $BACK_IPERF >/dev/null 2>&1 &
export BURROW_PSK; BURROW_PSK=$(head -c 32 /dev/urandom | base64)
export BURROW_DATA_DIR="$WORK/data" BURROW_PROXY_LISTEN=off BURROW_EDGE_HTTP_LISTEN=off BURROW_EDGE_HTTPS_LISTEN=off
SCHEME=${SCHEME:-tls}
NO_TLS=(); [ "$SCHEME" = ws ] && NO_TLS=(--no-tls)
"$BIN" gateway "${NO_TLS[@]}" --listen 127.0.0.1:$CTRL --forward 127.0.0.1:$PUB_IPERF=q:127.0.0.1:$BACK_IPERF \
  --forward 127.0.0.1:$PUB_HTTP=q:127.0.0.1:$BACK_HTTP 2>"$WORK/gw.log" &
sleep 0.3
case $SCHEME in
  tls) URL=tls://127.0.0.1:$CTRL ;;
  *) URL=$SCHEME://127.0.0.1:$CTRL/tunnel ;;
esac
PIN=(); [ "$SCHEME" = ws ] || PIN=(--gateway-thumbprint "$("$BIN" thumbprint | awk '/gateway-cert/{print $1}')")
"$BIN" run "${PIN[@]}" --connect-url "$URL" --agent-name q \
  --allow 127.0.0.1:$BACK_IPERF --allow 127.0.0.1:$BACK_HTTP 2>"$WORK/agent.log" &
for _ in $(seq 50); do grep -q 'links=2' "$WORK/gw.log" && break; sleep 0.1; done

iperf() { iperf3 -c 127.0.0.1 -p "$1" -t "$T" -P "$2" -J | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,2))'; }
wrkc() { wrk -t2 -c50 -d${D}s -H 'Connection: close' "http://127.0.0.1:$1/small.bin" | awk '/Requests\/sec/{print $2}'; }
wrkk() { wrk -t2 -c50 -d${D}s "http://127.0.0.1:$1/small.bin" | awk '/Requests\/sec/{print $2}'; }
ratio() { python3 -c "print(f'{$2/$1:.2f}')"; }
for rep in $(seq "$REPS"); do
  for p in 1 8; do
    d=$(iperf $BACK_IPERF $p); b=$(iperf $PUB_IPERF $p)
    echo "rep $rep iperf -P$p  direct $d Gbit/s  burrow $b Gbit/s  ratio $(ratio "$d" "$b")"
  done
  d=$(wrkk $BACK_HTTP); b=$(wrkk $PUB_HTTP)
  echo "rep $rep keep-alive  direct $d req/s   burrow $b req/s   ratio $(ratio "$d" "$b")"
  d=$(wrkc $BACK_HTTP); b=$(wrkc $PUB_HTTP)
  echo "rep $rep new-conn    direct $d req/s   burrow $b req/s   ratio $(ratio "$d" "$b")"
done
