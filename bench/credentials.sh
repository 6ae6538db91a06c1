#!/usr/bin/env bash
# Credential guessing from one address, per check, before and after: runs
# bench/credentials.py against a gateway of BIN and (if given) of BIN_B,
# each on a fresh data directory, plain ws:// on loopback.
#   bench/credentials.sh                    target/release/burrow
#   BIN_B=/path/to/older/burrow bench/credentials.sh
#   SECONDS_PER_CHECK=5 CONCURRENCY=16 bench/credentials.sh
# Prints per build and check: wrong guesses the gateway evaluated per second,
# attempts it throttled, log bytes in all and per failed attempt, other answers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BURROW_BIN:-$PWD/target/release/burrow}
SECS=${SECONDS_PER_CHECK:-5}
CONC=${CONCURRENCY:-16}
TUNNEL=24301; PROXY=24302
WORK=$(mktemp -d); chmod 700 "$WORK"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

secret() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }

one() {  # NAME BIN
  local name=$1 bin=$2 d="$WORK/$1"
  mkdir -p "$d"; chmod 700 "$d"
  secret > "$d/psk"
  BURROW_DATA_DIR="$d/data" BURROW_ADMIN_KEY="bk_$(python3 -c 'import secrets; print(secrets.token_hex(6))')_$(secret)" \
    BURROW_PSK_FILE="$d/psk" BURROW_PROXY_AUTH="user:$(secret)" RUST_LOG=info \
    "$bin" gateway --no-tls --listen "127.0.0.1:$TUNNEL" --proxy-listen "127.0.0.1:$PROXY" \
    2> "$d/gateway.log" &
  local pid=$!
  for _ in $(seq 100); do
    grep -q "egress proxy listening" "$d/gateway.log" 2>/dev/null && break
    sleep 0.1
  done
  local rss_before
  rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  python3 bench/credentials.py --tunnel "127.0.0.1:$TUNNEL" --proxy "127.0.0.1:$PROXY" \
    --log "$d/gateway.log" --seconds "$SECS" --concurrency "$CONC" |
    while IFS=$'\t' read -r check rate throttled total bytes other; do
      printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$check" "$rate" "$throttled" "$total" "$bytes" "$other"
    done
  echo "($name: gateway RSS ${rss_before} kB at start, $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") kB after)" >&2
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "Wrong credentials from one address, $CONC connections, ${SECS}s per check"
echo
echo "| build | check | evaluated/s | throttled | log bytes | log bytes/failure | other |"
echo "|---|---|---|---|---|---|---|"
one new "$BIN"
if [ -n "${BIN_B:-}" ]; then one old "$BIN_B"; fi
