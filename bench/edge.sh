#!/usr/bin/env bash
# Edge keep-alive check in one run (loopback only): wrk -t2 -c50 against
# nginx directly, through rathole (TCP transport), through a burrow fixed
# forward (ws://), and through burrow's HTTP edge with Host routing (the
# shared harness's burrow-edge path), interleaved per rep.
#   bench/edge.sh [REPS]              (needs wrk, nginx; rathole from
#                                      BENCH_STATE=target/bench ../shared/bench/setup.sh)
#   PATHS="direct edge" bench/edge.sh  a subset
#   BIN_B=/path/to/other/burrow PATHS="forward forward-b edge edge-b" bench/edge.sh
#                                      A/B: the same paths with a second build, interleaved
#   SYSCALLS=1 bench/edge.sh 1         also counts the tunnel's system calls and context
#                                      switches per request
#   MACHINE=1 bench/edge.sh 1         also prints, per path and rep, nginx's CPU per request
#                                      and the whole machine's: busy time (softirq in it),
#                                      idle share, context switches and TCP segments
#   IO=1 bench/edge.sh 1              also prints the bytes each tunnel process sent to storage
#                                      per request (/proc/PID/io write_bytes: the audit trail)
#   PERF=1 bench/edge.sh 1            also records the tunnel (both processes) with perf
#                                      during one extra edge run (perf.data in $OUT;
#                                      PERF_PATH=forward|rathole for another path's server)
# Prints req/s, p99 and the tunnel's CPU per request (its processes' user +
# system time over the run) per path and rep, then medians and ratios to direct.
# For the report beside rathole, bore and ssh use ../shared/bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BURROW_BIN:-$PWD/target/release/burrow}
RATHOLE=${RATHOLE_BIN:-$PWD/target/bench/.tools/bin/rathole}
REPS=${1:-3}
D=${WRK_D:-6}
PATHS=${PATHS:-direct rathole forward edge}
OUT=${OUT:-$(mktemp -d)}
BACK=18411; PUB_RH=28411; CTRL_RH=23411; PUB_FW=28412; CTRL_FW=23412; PUB_EDGE=28413
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; cp "$WORK"/*.log "$WORK"/*/*.log "$OUT"/ 2>/dev/null; rm -rf "$WORK"' EXIT

# shellcheck source=bench/nginx.sh
. bench/nginx.sh
start_nginx "$WORK" $BACK

wait_up() {  # PORT
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$1/small.bin" && return 0
    sleep 0.1
  done
  echo "port $1 did not serve" >&2; return 1
}

if [[ " $PATHS " == *" rathole "* ]]; then
  printf '[server]\nbind_addr = "127.0.0.1:%s"\ndefault_token = "t"\n[server.services.svc]\nbind_addr = "127.0.0.1:%s"\n' \
    $CTRL_RH $PUB_RH > "$WORK/rs.toml"
  printf '[client]\nremote_addr = "127.0.0.1:%s"\ndefault_token = "t"\n[client.services.svc]\nlocal_addr = "127.0.0.1:%s"\n' \
    $CTRL_RH $BACK > "$WORK/rc.toml"
  "$RATHOLE" --server "$WORK/rs.toml" >"$WORK/rs.log" 2>&1 &
  PIDS_rathole=$!
  sleep 0.3
  "$RATHOLE" --client "$WORK/rc.toml" >"$WORK/rc.log" 2>&1 &
  PIDS_rathole="$PIDS_rathole $!"
fi

# A fixed forward (ws://, pre-shared key): start_forward PATH BIN CTRL PUB
start_forward() {
  local psk; psk=$(head -c 32 /dev/urandom | base64)
  env BURROW_PSK="$psk" BURROW_DATA_DIR="$WORK/$1-gw" BURROW_PROXY_LISTEN=off BURROW_EDGE_HTTP_LISTEN=off \
    BURROW_EDGE_HTTPS_LISTEN=off "$2" gateway --no-tls --listen 127.0.0.1:$3 \
    --forward 127.0.0.1:$4=f:127.0.0.1:$BACK >/dev/null 2>"$WORK/$1-gw.log" &
  eval "PIDS_${1//-/_}=$!"
  sleep 0.3
  env BURROW_PSK="$psk" BURROW_DATA_DIR="$WORK/$1-ag" "$2" run --connect-url ws://127.0.0.1:$3/tunnel \
    --agent-name f --allow 127.0.0.1:$BACK 2>"$WORK/$1-ag.log" &
  eval "PIDS_${1//-/_}=\"\$PIDS_${1//-/_} $!\""
}

# The HTTP edge on the gateway's port (key-pair agent, one route): start_edge PATH BIN PUB
start_edge() {
  local admin url gw=$WORK/$1
  mkdir -p "$gw"
  admin="bk_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  url="ws://localhost:$3/connect"
  env BURROW_ADMIN_KEY="$admin" BURROW_DATA_DIR="$gw/gw" BURROW_PROXY_LISTEN=off \
    BURROW_EDGE_HTTP_LISTEN=off BURROW_EDGE_HTTPS_LISTEN=off \
    "$2" gateway --no-tls --listen 127.0.0.1:$3 >/dev/null 2>"$gw/gw.log" &
  eval "PIDS_${1//-/_}=$!"
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$3/" && break; sleep 0.1; done
  "$2" keygen --agent-name bench --out-dir "$gw" >/dev/null
  CONNECT_URL="$url" BURROW_ADMIN_KEY="$admin" "$2" register --agent-name bench --key-name k \
    --public-key "$gw/ConnectionAgent-bench.pem.pub" > "$gw/agent.env"
  CONNECT_URL="$url" BURROW_ADMIN_KEY="$admin" "$2" add-route --hostname 127.0.0.1 \
    --agent-name bench --target "http://127.0.0.1:$BACK" >/dev/null
  # shellcheck disable=SC2046
  env $(grep -v '^AUTH_SERVER_DOMAIN=' "$gw/agent.env") AUTH_SERVER_DOMAIN="http://localhost:$3" \
    AUTH_SERVER_PRIVATE_KEY_PEM_PATH="$gw/ConnectionAgent-bench.pem" BURROW_DATA_DIR="$gw/agent" \
    "$2" run 2>"$gw/agent.log" &
  eval "PIDS_${1//-/_}=\"\$PIDS_${1//-/_} $!\""
}

has() { [[ " $PATHS " == *" $1 "* ]]; }
has forward && start_forward forward "$BIN" $CTRL_FW $PUB_FW
has edge && start_edge edge "$BIN" $PUB_EDGE
# A/B: the same paths with a second build, in the same interleaved run.
has forward-b && start_forward forward-b "${BIN_B:?forward-b needs BIN_B}" $((CTRL_FW + 10)) $((PUB_FW + 10))
has edge-b && start_edge edge-b "${BIN_B:?edge-b needs BIN_B}" $((PUB_EDGE + 10))

port() {
  case $1 in
    direct) echo $BACK ;; rathole) echo $PUB_RH ;; forward) echo $PUB_FW ;; edge) echo $PUB_EDGE ;;
    forward-b) echo $((PUB_FW + 10)) ;; edge-b) echo $((PUB_EDGE + 10)) ;;
  esac
}
for p in $PATHS; do wait_up "$(port "$p")"; done

# CPU ticks (user + system) of one process.
ticks1() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# wrk's req/s and p99 (ms) as "RPS P99".
wrkk() {
  wrk -t2 -c50 -d"${D}s" --latency "http://127.0.0.1:$1/small.bin" | awk '
    /Requests\/sec/ {r=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p=v}
    END {printf "%s %s\n", r, p}'
}

: > "$OUT/results.tsv"
for rep in $(seq "$REPS"); do
  order=$PATHS; [ $((rep % 2)) -eq 0 ] && order=$(echo "$PATHS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for p in $order; do
    wrk -t2 -c50 -d1s "http://127.0.0.1:$(port "$p")/small.bin" >/dev/null
    v="PIDS_${p//-/_}"; s0=(); for q in ${!v:-}; do s0+=("$(ticks1 "$q")"); done
    if [ "${SYSCALLS:-0}" = 1 ] && [ -n "${!v:-}" ]; then
      ( sleep 1; perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$(echo ${!v} | tr ' ' ,)" -- sleep 4 2>"$OUT/sys-$p-$rep.txt" >/dev/null ) &
    fi
    read -r idle0 ctxt0 sirq0 < <(awk '/^cpu /{i=$5 + $6; q=$8} /^ctxt/{c=$2} END{print i, c, q}' /proc/stat)
    ng0=$(ticks1 "$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)")
    segs0=$(awk '/^Tcp:/ && $12 ~ /^[0-9]+$/ {print $12}' /proc/net/snmp)
    io0=(); for q in ${!v:-}; do io0+=("$(awk '/^write_bytes/{print $2}' "/proc/$q/io" 2>/dev/null || echo 0)"); done
    read -r rps p99 < <(wrkk "$(port "$p")")
    if [ "${IO:-0}" = 1 ] && [ -n "${!v:-}" ]; then
      i=0; for q in ${!v}; do
        b=$(awk '/^write_bytes/{print $2}' "/proc/$q/io" 2>/dev/null || echo 0)
        echo "  $p pid $q: $(python3 -c "print(round(($b-${io0[$i]})/max(1.0,$rps*$D),1))") bytes to storage per request"
        i=$((i + 1))
      done
    fi
    read -r idle1 ctxt1 sirq1 < <(awk '/^cpu /{i=$5 + $6; q=$8} /^ctxt/{c=$2} END{print i, c, q}' /proc/stat)
    ng1=$(ticks1 "$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)")
    segs1=$(awk '/^Tcp:/ && $12 ~ /^[0-9]+$/ {print $12}' /proc/net/snmp)
    if [ "${MACHINE:-0}" = 1 ]; then
      python3 -c "
busy = ($D*$(nproc)) - ($idle1-$idle0)/$HZ
n = $rps*$D
print(f'  $p: nginx {($ng1-$ng0)/$HZ/n*1e6:.1f} us/req, machine busy {busy/n*1e6:.1f} us/req (softirq {($sirq1-$sirq0)/$HZ/n*1e6:.1f}), idle {100-busy/($D*$(nproc))*100:.1f}%, context switches {($ctxt1-$ctxt0)/n:.2f}/req, TCP segments {($segs1-$segs0)/n:.2f}/req')"
    fi
    if [ "${SYSCALLS:-0}" = 1 ] && [ -n "${!v:-}" ]; then
      wait $! 2>/dev/null || true
      echo "  $p per request: $(python3 -c "
rows=[l.split(',') for l in open('$OUT/sys-$p-$rep.txt') if l[:1].isdigit()]
print(', '.join(f'{r[2].split(\":\")[-1]} {int(r[0])/(4*$rps):.2f}' for r in rows))" 2>/dev/null)"
    fi
    # Tunnel CPU per request, microseconds: total, then server/client.
    split=(); i=0; tot=0
    for q in ${!v:-}; do
      d=$(( $(ticks1 "$q") - ${s0[$i]} )); tot=$((tot + d)); i=$((i + 1))
      split+=("$(python3 -c "print(round($d/$HZ*1e6/max(1.0,$rps*$D),1))")")
    done
    cpu=$(python3 -c "print(round($tot/$HZ*1e6/max(1.0,$rps*$D),1))")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$p" "$rps" "$p99" "$cpu" "$(IFS=/; echo "${split[*]:-}")" | tee -a "$OUT/results.tsv"
  done
done
python3 - "$OUT/results.tsv" <<'PY'
import sys, statistics as st
rows = [l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l]
paths = list(dict.fromkeys(r[1] for r in rows))
med = {p: [st.median(float(r[i]) for r in rows if r[1] == p) for i in (2, 3, 4)] for p in paths}
d = med.get('direct', [None])[0]
print(f"{'path':10} {'req/s':>10} {'x direct':>9} {'p99 ms':>8} {'CPU us/req':>11}")
for p in paths:
    r, l, c = med[p]
    print(f"{p:10} {r:10.0f} {(r/d if d else float('nan')):9.2f} {l:8.2f} {c:11.1f}")
PY

PERF_PATH=${PERF_PATH:-edge}
if [ "${PERF:-0}" = 1 ] && [[ " $PATHS " == *" $PERF_PATH "* ]]; then
  wrk -t2 -c50 -d8s "http://127.0.0.1:$(port "$PERF_PATH")/small.bin" >/dev/null &
  sleep 1
  v="PIDS_${PERF_PATH//-/_}"; set -- ${!v}
  perf record ${PERF_ARGS:--g} -o "$OUT/perf.data" -p "$(echo ${!v} | tr ' ' ,)" -- sleep 5 2>/dev/null || true
  wait %% 2>/dev/null || true
  echo "perf data: $OUT/perf.data (perf report -i $OUT/perf.data --no-children)"
fi
echo "raw: $OUT/results.tsv"
