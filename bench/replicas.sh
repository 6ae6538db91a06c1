#!/usr/bin/env bash
# Replicas (loopback only, PostgreSQL on 127.0.0.1:5432): keep-alive req/s
# and p99 for a visitor entering the replica that holds the agent's link
# (A) against one entering a replica that must hop to it (B), beside
# direct nginx; then the same with A's metrics on (--metrics-listen, and a
# scrape every second), for the cost of metrics. wrk -t2 -c50 over HTTPS to
# each replica's edge, Host app.tunnel.test; interleaved reps.
#   cargo build --release -p burrow
#   bench/replicas.sh [REPS]              (needs wrk, nginx, psql, openssl)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BURROW_BIN:-$PWD/target/release/burrow}
REPS=${1:-3}
D=${WRK_D:-6}
PG=${BURROW_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
BACK=18511; PA=18512; PB=18513; EA=18514; EB=18515; MA=18516
SCHEMA=burrow_bench_$$
WORK=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
  psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=bench/nginx.sh
. bench/nginx.sh
start_nginx "$WORK" $BACK
umask 077
psql "$PG" -qc "CREATE SCHEMA $SCHEMA"
DB="$PG?options=-c%20search_path%3D$SCHEMA"
ADMIN="bk_$(openssl rand -hex 6)_$(openssl rand -hex 24)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" \
  -out "$WORK/cert.pem" -days 2 -subj /CN=bench -addext subjectAltName=IP:127.0.0.1 2>/dev/null

start_gw() {  # NAME PORT EDGE [FLAGS...]
  local name=$1 port=$2 edge=$3; shift 3
  mkdir -p "$WORK/$name"
  BURROW_DATA_DIR="$WORK/$name" BURROW_DATABASE_URL="$DB" BURROW_ADMIN_KEY="$ADMIN" \
  BURROW_TLS_CERT="$WORK/cert.pem" BURROW_TLS_KEY="$WORK/key.pem" BURROW_LOG_FORMAT=json \
    "$BIN" gateway --listen 127.0.0.1:$port --replica-id "$name" \
      --advertise-url "tls://127.0.0.1:$port" --edge-https-listen 127.0.0.1:$edge \
      --edge-http-listen off --proxy-listen off --public-domain tunnel.test "$@" \
      2> "$WORK/$name.log" &
  eval "GW_$name=$!"
  for _ in $(seq 100); do grep -q tunnel_listening "$WORK/$name.log" && return 0; sleep 0.1; done
  echo "gateway $name did not start" >&2; exit 1
}
start_gw a $PA $EA
start_gw b $PB $EB
THUMB=$(grep -o '"thumbprint":"[0-9A-F]*"' "$WORK/a.log" | head -1 | cut -d'"' -f4)
export CONNECT_URL="wss://127.0.0.1:$PA/connect" BURROW_ADMIN_KEY="$ADMIN" GATEWAY_THUMBPRINT="$THUMB"
(cd "$WORK" && "$BIN" keygen --agent-name bench >/dev/null)
"$BIN" register --agent-name bench --key-name k1 --public-key "$WORK/ConnectionAgent-bench.pem.pub" > "$WORK/agent.env"
"$BIN" add-route --hostname app.tunnel.test --agent-name bench --target "http://127.0.0.1:$BACK" >/dev/null
start_agent() {
  # shellcheck disable=SC2046
  env $(cat "$WORK/agent.env") AUTH_SERVER_PRIVATE_KEY_PEM_PATH="$WORK/ConnectionAgent-bench.pem" \
    GATEWAY_THUMBPRINT="$THUMB" CONNECT_URL="tls://127.0.0.1:$PA" BURROW_LINKS=1 \
    BURROW_ALLOW_LOOPBACK=true BURROW_UI_LISTEN=off RECONNECT_DELAY_SECONDS=0.5 \
    BURROW_DATA_DIR="$WORK/agent" BURROW_LOG_FORMAT=json \
    "$BIN" run 2> "$WORK/agent.log" &
  AGENT=$!
}
mkdir -p "$WORK/agent"
start_agent

url() { case $1 in direct) echo "http://127.0.0.1:$BACK/small.bin" ;; a|a+metrics) echo "https://127.0.0.1:$EA/small.bin" ;; b) echo "https://127.0.0.1:$EB/small.bin" ;; esac; }
wrkk() {  # PATH SECONDS
  wrk -t2 -c50 -d"$2s" --latency -H "Host: app.tunnel.test" "$(url "$1")" | awk '
    /Requests\/sec/ {r=$2}
    /Non-2xx/ {bad=$NF}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p=v}
    END {printf "%s %s %s\n", r, p, bad+0}'
}
wait_route() {  # PATH
  for _ in $(seq 100); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' -H 'Host: app.tunnel.test' "$(url "$1")")" = 200 ] && return 0
    sleep 0.2
  done
  echo "$1 does not serve the route" >&2; exit 1
}
phase() {  # PATHS...
  for p in "$@"; do wait_route "$p"; wrk -t2 -c50 -d1s -H "Host: app.tunnel.test" "$(url "$p")" >/dev/null; done
  for rep in $(seq "$REPS"); do
    order="$*"; [ $((rep % 2)) -eq 0 ] && order=$(echo "$*" | tr ' ' '\n' | tac | tr '\n' ' ')
    for p in $order; do
      read -r rps p99 bad < <(wrkk "$p" "$D")
      printf '%s\t%s\t%s\t%s\t%s\n' "$rep" "$p" "$rps" "$p99" "$bad" | tee -a "$WORK/results.tsv"
    done
  done
}
: > "$WORK/results.tsv"
echo "rep	path	req/s	p99_ms	non2xx"
phase direct a b
# A again, with metrics on and scraped every second (CONTROL=1: restarted
# without them, to tell the restart's effect from the metrics').
kill -TERM "$GW_a"; wait "$GW_a" 2>/dev/null || true
if [ "${CONTROL:-0}" = 1 ]; then
  start_gw a $PA $EA
else
  start_gw a $PA $EA --metrics-listen 127.0.0.1:$MA
  ( while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$MA/metrics"; done ) &
fi
# The agent moved its link to B when A went away: bring it back to A.
kill -TERM "$AGENT"; wait "$AGENT" 2>/dev/null || true
start_agent
sleep 2
phase direct a+metrics
grep -q '"hop\|peer_link_up' "$WORK/b.log" && echo "(B reached the agent through peer links: $(grep -c peer_link_up "$WORK/b.log") link(s) up)"
echo
awk -F'\t' '{r[$2]=r[$2] " " $3; p[$2]=p[$2] " " $4}
  function med(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
  END { d = med(r["direct"]); printf "median\treq/s\tx direct\tp99 ms\n"
        for (k in r) printf "%s\t%.0f\t%.2f\t%.2f\n", k, med(r[k]), med(r[k]) / d, med(p[k]) }' "$WORK/results.tsv" | sort
