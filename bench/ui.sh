#!/usr/bin/env bash
# Does the agent's web UI slow the tunnel, and how quick are its pages?
# Loopback only, one run:
#   1. edge keep-alive req/s and p99 (wrk -t2 -c50, a 1 KiB file from
#      nginx) directly, through the edge with no browser, and through the
#      edge with a Chromium session on the UI (dashboard open, Logs page
#      following the agent's log), interleaved per rep;
#   2. server time of the API calls behind the Dashboard, Mappings and
#      Traffic pages with 1,000 mappings and 1,000,000 audit records
#      (median and p90 of 20 calls each, curl's time to the first byte).
#   bench/ui.sh [REPS]    (needs wrk, nginx, chromium, node, and
#                          npm ci in crates/burrow/tests/browser)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BURROW_BIN:-$PWD/target/release/burrow}
FILL=${FILL_BIN:-$PWD/target/release/fillaudit}
REPS=${1:-3}
D=${WRK_D:-6}
RECORDS=${RECORDS:-1000000}
MAPPINGS=${MAPPINGS:-1000}
BACK=18421; GW=28421; UI=28422
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
[ -x "$FILL" ] || cargo build --release -q -p burrow-bench --bin fillaudit

# shellcheck source=bench/nginx.sh
. bench/nginx.sh
start_nginx "$WORK" $BACK

# The gateway's store, filled first: the agent's audit trail.
echo "filling $RECORDS audit records..."
t0=$(date +%s.%N)
mkdir -m 700 -p "$WORK/gw"
"$FILL" "$WORK/gw" ui "$RECORDS" "$MAPPINGS"
echo "  in $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s"

admin="bk_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
url="ws://localhost:$GW/connect"
env BURROW_ADMIN_KEY="$admin" BURROW_DATA_DIR="$WORK/gw" BURROW_PROXY_LISTEN=off \
  BURROW_EDGE_HTTP_LISTEN=off BURROW_EDGE_HTTPS_LISTEN=off \
  "$BIN" gateway --no-tls --listen 127.0.0.1:$GW --public-domain tunnel.test >/dev/null 2>"$WORK/gw.log" &
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$GW/" && break; sleep 0.1; done
"$BIN" keygen --agent-name ui --out-dir "$WORK" >/dev/null
CONNECT_URL="$url" BURROW_ADMIN_KEY="$admin" "$BIN" register --agent-name ui --key-name k \
  --public-key "$WORK/ConnectionAgent-ui.pem.pub" > "$WORK/agent.env"
PASSWORD=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
# shellcheck disable=SC2046
env $(grep -v '^AUTH_SERVER_DOMAIN=' "$WORK/agent.env") AUTH_SERVER_DOMAIN="http://localhost:$GW" \
  AUTH_SERVER_PRIVATE_KEY_PEM_PATH="$WORK/ConnectionAgent-ui.pem" BURROW_DATA_DIR="$WORK/agent" \
  BURROW_ALLOW_LOOPBACK=true Agent__Port=$UI BURROW_UI_PLAIN_HTTP=true \
  Agent__Auth__PasswordHash="$(openssl passwd -6 "$PASSWORD")" Agent__JwtSecret="$(openssl rand -base64 32)" \
  "$BIN" run 2>"$WORK/agent.log" &
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$UI/" && break; sleep 0.1; done

# Log in with curl; import the mappings (m0.tunnel.test… → nginx).
JAR=$WORK/jar
csrf=$(curl -s -c "$JAR" -H 'Content-Type: application/json' \
  --data-binary "{\"password\":\"$PASSWORD\"}" "http://127.0.0.1:$UI/api/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf"])')
python3 -c "
import json
print(json.dumps({'mappings': [{'hostname': f'm{i}.tunnel.test', 'target': 'http://127.0.0.1:$BACK'} for i in range($MAPPINGS)]}))" > "$WORK/mappings.json"
curl -s -b "$JAR" -H 'Content-Type: application/json' -H "X-CSRF-Token: $csrf" \
  --data-binary @"$WORK/mappings.json" "http://127.0.0.1:$UI/api/mappings-import" | python3 -c '
import json, sys
r = json.load(sys.stdin)
pub = sum(1 for m in r["gateway"]["mappings"] if m["published"])
print("imported", r["imported"], "mappings,", pub, "published")'
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: m0.tunnel.test' "http://127.0.0.1:$GW/small.bin")" = 200 ] && break
  sleep 0.1
done

# 2. Page server time.
calls=(
  "dashboard /api/status"
  "mappings /api/mappings"
  "traffic,newest-50 /api/traffic?limit=50"
  "traffic,page-100 /api/traffic?limit=50&offset=5000"
  "traffic,one-host /api/traffic?limit=50&host=m7.tunnel.test"
  "traffic,status-502 /api/traffic?limit=50&status=502"
  "traffic,no-match /api/traffic?limit=50&host=none.tunnel.test"
)
echo
echo "page API server time, $MAPPINGS mappings, $RECORDS audit records (ms, 20 calls):"
printf '%-20s %8s %8s %8s\n' call median p90 bytes
for c in "${calls[@]}"; do
  name=${c%% *}; path=${c#* }
  for _ in $(seq 20); do
    curl -s -o "$WORK/body" -b "$JAR" -w '%{time_starttransfer} %{size_download}\n' "http://127.0.0.1:$UI$path"
  done > "$WORK/times"
  python3 - "$name" "$WORK/times" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[2]) if l.strip()]
t = sorted(float(r[0]) * 1000 for r in rows)
print(f"{sys.argv[1]:20} {st.median(t):8.2f} {t[int(len(t) * 0.9) - 1]:8.2f} {rows[-1][1]:>8}")
PY
done

# 1. Edge keep-alive with and without a browser session.
wrkk() {  # PORT [HOST]
  wrk -t2 -c50 -d"${D}s" --latency ${2:+-H "Host: $2"} "http://127.0.0.1:$1/small.bin" | awk '
    /Requests\/sec/ {r=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p=v}
    END {printf "%s %s\n", r, p}'
}
echo
: > "$WORK/results.tsv"
for rep in $(seq "$REPS"); do
  order="direct edge edge+ui"; [ $((rep % 2)) -eq 0 ] && order="edge+ui edge direct"
  for p in $order; do
    browser=""
    if [ "$p" = edge+ui ]; then
      UI_URL="http://127.0.0.1:$UI" UI_PASSWORD="$PASSWORD" node bench/ui-browser.js > "$WORK/browser.out" 2>&1 &
      browser=$!
      for _ in $(seq 300); do grep -q '^ready' "$WORK/browser.out" && break; sleep 0.1; done
      grep -q '^ready' "$WORK/browser.out" || { cat "$WORK/browser.out" >&2; exit 1; }
      sleep 1
    fi
    case $p in direct) port=$BACK; host="" ;; *) port=$GW; host=m0.tunnel.test ;; esac
    wrk -t2 -c50 -d1s ${host:+-H "Host: $host"} "http://127.0.0.1:$port/small.bin" >/dev/null
    read -r rps p99 < <(wrkk "$port" "$host")
    [ -n "$browser" ] && { kill "$browser"; wait "$browser" 2>/dev/null || true; }
    printf '%s\t%s\t%s\t%s\n' "$rep" "$p" "$rps" "$p99" | tee -a "$WORK/results.tsv"
  done
done
python3 - "$WORK/results.tsv" <<'PY'
import sys, statistics as st
rows = [l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l]
paths = list(dict.fromkeys(r[1] for r in rows))
med = {p: [st.median(float(r[i]) for r in rows if r[1] == p) for i in (2, 3)] for p in paths}
spread = {p: (min(float(r[2]) for r in rows if r[1] == p), max(float(r[2]) for r in rows if r[1] == p)) for p in paths}
d = med['direct'][0]
print(f"{'path':10} {'req/s':>10} {'x direct':>9} {'p99 ms':>8} {'req/s min-max':>16}")
for p in ['direct', 'edge', 'edge+ui']:
    r, l = med[p]
    print(f"{p:10} {r:10.0f} {r / d:9.2f} {l:8.2f} {spread[p][0]:8.0f}-{spread[p][1]:.0f}")
print(f"edge+ui / edge: {med['edge+ui'][0] / med['edge'][0]:.3f} req/s, {med['edge+ui'][1] / med['edge'][1]:.3f} p99")
PY
