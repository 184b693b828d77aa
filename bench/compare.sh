#!/usr/bin/env bash
# Compares switchyard's agent router with `bare` (a relay sharing nothing
# with switchyard's stack: tokio-tungstenite, no actors), `ceiling` (the
# minimal relay on the same WebSocket stack) and with the reference Node router of mephisto 1.1.1,
# as shipped and with its re-send bug fixed. Every scenario run is made
# against a fresh router process; repetitions alternate the routers.
# See bench/README.md ("compare.sh") for the scenarios and the output.
#
# Usage: bash bench/compare.sh [--reps N] [--scenarios a,b,c,d,e]
#          [--routers switchyard,bare,ceiling,node,node-fixed] [--quick]
#          [--threads N] [--idle-max N] [--out DIR] [--no-build]
#          [--switchyard-args "ARGS"]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
CACHE=$ROOT/target/bench-cache
MEPHISTO_VERSION=1.1.1

usage() {
  cat <<EOF
Usage: bash bench/compare.sh [options]

  --reps N            repetitions of every scenario (default 3)
  --scenarios LIST    comma-separated, from a,b,c,d,e (default all)
                        a  100 agents x 10 updates/s (latency)
                        b  1000 agents x 1 update/s (latency)
                        c  max sustained throughput, 100 agents (--max ramp)
                        d  RSS per idle agent at 5000 and at the most idle
                           agents the open-file limit allows
                        e  router CPU per 100k updates at 25 000 round trips/s
                           (the figure at 1 000/s is taken from a)
  --routers LIST      comma-separated, from switchyard,bare,ceiling,node,
                        node-fixed (default all five)
  --quick             smoke run: a few seconds per scenario
  --threads N         worker threads of the load generator
  --idle-max N        idle agents for the second figure of d
                        (default: hard open-file limit - 1000, capped by the
                        ephemeral port range)
  --out DIR           results directory (default bench/results/<UTC time>/)
  --no-build          use the binaries in target/release as they are
  --switchyard-args "ARGS"
                      more flags for every switchyard started, e.g.
                        "--no-shortcut" (every live update then crosses
                        its Agent's or the BackendLink's mailbox)
  -h, --help          this text
EOF
}

REPS=3
SCENARIOS=a,b,c,d,e
ROUTERS=switchyard,bare,ceiling,node,node-fixed
QUICK=0
THREADS=
IDLE_MAX=
OUT=
BUILD=1
SY_ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --reps) REPS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --routers) ROUTERS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --threads) THREADS=$2; shift 2 ;;
    --idle-max) IDLE_MAX=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --switchyard-args) read -r -a SY_ARGS <<<"$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

die() { echo "compare.sh: $*" >&2; exit 1; }

[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive integer"
IFS=, read -r -a SCEN_LIST <<<"$SCENARIOS"
IFS=, read -r -a ROUTER_LIST <<<"$ROUTERS"
for s in "${SCEN_LIST[@]}"; do
  [[ $s =~ ^[abcde]$ ]] || die "unknown scenario '$s' (a,b,c,d,e)"
done
need_node=0
for r in "${ROUTER_LIST[@]}"; do
  case $r in
    switchyard|bare|ceiling) ;;
    node|node-fixed) need_node=1 ;;
    *) die "unknown router '$r' (switchyard,bare,ceiling,node,node-fixed)" ;;
  esac
done

# ------------------------------------------------------------ durations
if [[ $QUICK == 1 ]]; then
  FIXED=(--duration 3 --warmup 1 --drain 1)
  MAXR=(--duration 2 --warmup 0.5 --drain 1 --max-time 20 --bisect-steps 1)
  IDLE=(--duration 3 --drain 1)
else
  FIXED=(--duration 10 --warmup 2 --drain 3)
  MAXR=(--duration 5 --warmup 1 --drain 2 --max-time 240 --bisect-steps 5)
  IDLE=(--duration 8 --drain 2)
fi
# The ramp of c starts at 2000 round trips/s, for the Node routers at 500
# (they do not keep p99 under 100 ms at 2000/s); the factor 2 puts both on
# the same rates from 2000/s on.
MAX_START=(--start-rate 2000 --step-factor 2)
MAX_START_NODE=(--start-rate 500 --step-factor 2)

# ------------------------------------------------------------ cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-compare.XXXXXX")
ROUTER_PID=
GEN_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in $GEN_PID $ROUTER_PID; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in $GEN_PID $ROUTER_PID; do
    wait_gone "$p" 5 || kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# True once process $1 has exited (gone or zombie), polling up to $2 s.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2)) st
  while :; do
    st=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
    st=${st##*) }
    [[ ${st%% *} == Z ]] && return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# ------------------------------------------------------------ installs
apt_install() {
  log "installing Debian packages: $*"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

PY=python3
ensure_pip() {
  command -v python3 >/dev/null 2>&1 || apt_install python3
  if python3 -m pip --version >/dev/null 2>&1; then
    PY=python3
    return
  fi
  if [[ ! -x $CACHE/venv/bin/python ]]; then
    rm -rf "$CACHE/venv"
    if ! python3 -m venv "$CACHE/venv" >&2; then
      apt_install python3-venv
      rm -rf "$CACHE/venv"
      python3 -m venv "$CACHE/venv" >&2
    fi
  fi
  PY=$CACHE/venv/bin/python
  "$PY" -m pip --version >/dev/null 2>&1 || die "no pip in $CACHE/venv"
}

NODE_DIR=
setup_node_router() {
  local unpacked=$CACHE/mephisto-$MEPHISTO_VERSION
  if ! compgen -G "$unpacked/mephisto/abstractions/architects/router/node/server.js" >/dev/null; then
    ensure_pip
    mkdir -p "$CACHE/download"
    log "pip download mephisto==$MEPHISTO_VERSION"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip download -q --no-deps \
      --only-binary=:all: --dest "$CACHE/download" "mephisto==$MEPHISTO_VERSION" >&2
    local wheels=("$CACHE/download/mephisto-$MEPHISTO_VERSION-"*.whl) wheel
    wheel=${wheels[0]}
    [[ -f $wheel ]] || die "no mephisto $MEPHISTO_VERSION wheel in $CACHE/download"
    rm -rf "$unpacked"
    "$PY" -m zipfile -e "$wheel" "$unpacked"
  fi
  local server
  server=$(find "$unpacked" -path '*/architects/router/node/server.js' | head -n1)
  [[ -n $server ]] || die "no router/node/server.js in the mephisto wheel"
  NODE_DIR=$(dirname "$server")
  [[ -f $NODE_DIR/package-lock.json ]] || die "no package-lock.json in $NODE_DIR"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  if [[ ! -f $NODE_DIR/node_modules/.compare-installed ]]; then
    log "npm ci in $NODE_DIR"
    (cd "$NODE_DIR" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)
    touch "$NODE_DIR/node_modules/.compare-installed"
  fi
  grep -q 'process.env.PORT' "$NODE_DIR/server.js" \
    || die "server.js no longer takes its port from PORT; check how it starts"
}

# A copy of the Node router whose _send_message treats the `null` that the
# locked ws version passes to its send callback as success (as shipped it
# only accepts `undefined`, so every packet is sent again after 500 ms).
FIXED_DIR=
setup_node_fixed() {
  FIXED_DIR=$TMP/node-fixed
  mkdir -p "$FIXED_DIR"
  cp -a "$NODE_DIR/." "$FIXED_DIR/"
  local before
  before=$(grep -c 'if (error === undefined)' "$FIXED_DIR/server.js" || true)
  [[ $before == 1 ]] || die "expected one 'if (error === undefined)' in server.js, found $before"
  sed -i 's/if (error === undefined)/if (error === undefined || error === null)/' "$FIXED_DIR/server.js"
  grep -q 'if (error === undefined || error === null)' "$FIXED_DIR/server.js" \
    || die "patching the node-fixed copy failed"
  if grep -q 'if (error === undefined)' "$FIXED_DIR/server.js"; then
    die "patching the node-fixed copy failed (old comparison still there)"
  fi
  diff -u "$NODE_DIR/server.js" "$FIXED_DIR/server.js" \
    | sed "1s|.*|--- node/server.js|;2s|.*|+++ node-fixed/server.js|" >"$OUT/node-fixed.diff" || true
}

# Both Node routers are started with this preload, which binds their
# server.listen(PORT) to 127.0.0.1 instead of every interface; server.js
# itself is not touched.
PRELOAD=$TMP/listen-loopback.js
cat >"$PRELOAD" <<'EOF'
"use strict";
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const a0 = args[0];
  const isPort = typeof a0 === "number" || (typeof a0 === "string" && /^\d+$/.test(a0));
  if (isPort && typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  return listen.apply(this, args);
};
EOF

# ------------------------------------------------------------ build
if [[ $BUILD == 1 ]]; then
  log "building switchyard and the bench crate (release)"
  (cd "$ROOT" && cargo build --release --bin switchyard >&2 && cargo build -p switchyard-bench --release >&2)
fi
SY=$ROOT/target/release/switchyard
CEIL=$ROOT/target/release/ceiling
BARE=$ROOT/target/release/bare_relay
GEN=$ROOT/target/release/switchyard-bench
REPORT=$ROOT/target/release/report
for b in "$SY" "$CEIL" "$BARE" "$GEN" "$REPORT"; do
  [[ -x $b ]] || die "missing $b (run without --no-build)"
done

# ------------------------------------------------------------ results dir
[[ -n $OUT ]] || OUT=$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
RUNS=$OUT/runs.jsonl
: >"$RUNS"

if [[ $need_node == 1 ]]; then
  setup_node_router
  for r in "${ROUTER_LIST[@]}"; do
    if [[ $r == node-fixed ]]; then setup_node_fixed; fi
  done
fi

# ------------------------------------------------------------ limits, facts
hard=$(ulimit -Hn)
ulimit -Sn "$hard" || true
log "open-file limit: hard $hard, soft now $(ulimit -Sn)"
if [[ $hard == unlimited ]]; then hard=1048576; fi
read -r port_lo port_hi </proc/sys/net/ipv4/ip_local_port_range
if [[ -z $IDLE_MAX ]]; then
  IDLE_MAX=$((hard - 1000))
  ports=$((port_hi - port_lo + 1 - 1000))
  if ((ports < IDLE_MAX)); then IDLE_MAX=$ports; fi
fi
((IDLE_MAX > 0)) || die "open-file limit $hard leaves no room for idle agents"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "ram: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel: $(uname -sr)"
  echo "ulimit -Hn: $(ulimit -Hn)"
  echo "ephemeral ports: $port_lo-$port_hi"
  echo "node: $(node --version 2>/dev/null || echo none)"
  echo "rustc: $(rustc --version 2>/dev/null || echo none)"
  echo "switchyard commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (modified work tree)')"
} >"$OUT/machine.txt"
{
  echo "reps: $REPS"
  echo "scenarios: $SCENARIOS"
  echo "routers: $ROUTERS"
  echo "switchyard extra flags: ${SY_ARGS[*]:-none}"
  echo "quick: $QUICK"
  echo "generator threads: ${THREADS:-default}"
  echo "fixed runs: ${FIXED[*]}"
  echo "max ramp: ${MAX_START[*]} ${MAXR[*]} (node, node-fixed: ${MAX_START_NODE[*]})"
  echo "idle runs: ${IDLE[*]}"
  echo "idle max agents: $IDLE_MAX"
  if [[ -n $NODE_DIR ]]; then echo "node router: ${NODE_DIR#"$ROOT"/} (mephisto $MEPHISTO_VERSION wheel), started as PORT=<port> node server.js"; fi
} >"$OUT/settings.txt"
sed 's/^/  /' "$OUT/machine.txt" >&2

# ------------------------------------------------------------ routers
port_range 3400 3900

# start_router NAME PORT LOG: sets ROUTER_PID once the port accepts.
start_router() {
  local name=$1 port=$2 logf=$3
  case $name in
    switchyard)
      local data=$TMP/data-$port
      rm -rf "$data"
      env -u PORT "$SY" --uart none --tcp none --data-dir "$data" \
        --http "127.0.0.1:$port" "${SY_ARGS[@]}" >"$logf" 2>&1 &
      ;;
    ceiling)
      "$CEIL" --http "127.0.0.1:$port" >"$logf" 2>&1 &
      ;;
    bare)
      "$BARE" --http "127.0.0.1:$port" >"$logf" 2>&1 &
      ;;
    node)
      (cd "$NODE_DIR" && PORT=$port exec node --require "$PRELOAD" server.js) >"$logf" 2>&1 &
      ;;
    node-fixed)
      (cd "$FIXED_DIR" && PORT=$port exec node --require "$PRELOAD" server.js) >"$logf" 2>&1 &
      ;;
  esac
  ROUTER_PID=$!
  local deadline=$((SECONDS + 30))
  until port_in_use "$port"; do
    if ! kill -0 "$ROUTER_PID" 2>/dev/null || wait_gone "$ROUTER_PID" 0; then
      tail -n 20 "$logf" >&2
      die "$name exited before listening on $port"
    fi
    ((SECONDS < deadline)) || die "$name did not listen on $port within 30 s"
    sleep 0.05
  done
}

stop_router() {
  [[ -n $ROUTER_PID ]] || return 0
  kill -TERM "$ROUTER_PID" 2>/dev/null || true
  if ! wait_gone "$ROUTER_PID" 20; then
    log "router $ROUTER_PID ignored SIGTERM for 20 s; killing it"
    kill -KILL "$ROUTER_PID" 2>/dev/null || true
  fi
  wait "$ROUTER_PID" 2>/dev/null || true
  ROUTER_PID=
}

# ------------------------------------------------------------ one run
# run_one ROUTER SCENARIO REP ARGS...: fresh router, generator, JSON lines.
run_one() {
  local router=$1 scen=$2 rep=$3
  shift 3
  pick_port
  local port=$PORT_NOW id="$scen-$router-rep$rep"
  local rlog=$OUT/logs/$id.router.log glog=$OUT/logs/$id.gen.log gout=$TMP/gen.out
  local t0=$SECONDS
  start_router "$router" "$port" "$rlog"
  local targs=()
  if [[ -n $THREADS ]]; then targs=(--threads "$THREADS"); fi
  "$GEN" --url "ws://127.0.0.1:$port/" --router-pid "$ROUTER_PID" "${targs[@]}" "$@" \
    >"$gout" 2>"$glog" &
  GEN_PID=$!
  local rc=0
  wait "$GEN_PID" || rc=$?
  GEN_PID=
  stop_router
  gzip -f "$rlog"
  rm -rf "$TMP/data-$port"
  local n=0 line
  while IFS= read -r line; do
    [[ $line == \{* ]] || continue
    printf '{"router":"%s","scenario":"%s","rep":%d,"run":"%s","result":%s}\n' \
      "$router" "$scen" "$rep" "$id" "$line" >>"$RUNS"
    n=$((n + 1))
  done <"$gout"
  if [[ $rc != 0 || $n == 0 ]]; then
    printf '{"router":"%s","scenario":"%s","rep":%d,"run":"%s","error":"generator exit %d, %d JSON lines"}\n' \
      "$router" "$scen" "$rep" "$id" "$rc" "$n" >>"$RUNS"
    log "  $id: generator exit $rc ($n JSON lines); see logs/$id.gen.log"
  fi
  log "  $id: $((SECONDS - t0)) s; $(grep -E '^(   sent|== max:|   router rss)' "$glog" | tail -n 1 | sed 's/^ *//')"
}

# scenario_args KEY ROUTER: the generator's arguments of one run.
scenario_args() {
  case $1 in
    a) echo "--agents 100 --rate 10 ${FIXED[*]}" ;;
    b) echo "--agents 1000 --rate 1 ${FIXED[*]}" ;;
    c)
      case $2 in
        node|node-fixed) echo "--max --agents 100 ${MAX_START_NODE[*]} ${MAXR[*]}" ;;
        *) echo "--max --agents 100 ${MAX_START[*]} ${MAXR[*]}" ;;
      esac
      ;;
    d5k) echo "--connect-only 5000 ${IDLE[*]}" ;;
    dmax) echo "--connect-only $IDLE_MAX ${IDLE[*]}" ;;
    e25k) echo "--agents 100 --rate 250 ${FIXED[*]}" ;;
  esac
}

RUN_KEYS=()
for s in "${SCEN_LIST[@]}"; do
  case $s in
    d) RUN_KEYS+=(d5k dmax) ;;
    e) RUN_KEYS+=(e25k) ;;
    *) RUN_KEYS+=("$s") ;;
  esac
done

# Rough seconds per run on a 2-core machine, for the estimate printed below.
estimate() {
  local key=$1 router=$2 node=0
  case $router in node|node-fixed) node=1 ;; esac
  if [[ $QUICK == 1 ]]; then
    case $key in a|e25k) echo 6 ;; b|d5k) echo 7 ;; c) echo 22 ;; dmax) echo $((13 + 5 * node)) ;; esac
  else
    case $key in a|e25k) echo 17 ;; b) echo 18 ;; c) echo 150 ;; d5k) echo 14 ;; dmax) echo $((23 + 20 * node)) ;; esac
  fi
}
est=0
for key in "${RUN_KEYS[@]}"; do
  for router in "${ROUTER_LIST[@]}"; do
    est=$((est + $(estimate "$key" "$router")))
  done
done
est=$((est * REPS))
log "results: $OUT"
log "${#RUN_KEYS[@]} run kinds x ${#ROUTER_LIST[@]} routers x $REPS reps; expected about $((est / 60)) min $((est % 60)) s"
start_all=$SECONDS
nr=${#ROUTER_LIST[@]}
for ((rep = 1; rep <= REPS; rep++)); do
  # Each repetition starts with the next router, so no router is always first.
  order=()
  for ((k = 0; k < nr; k++)); do
    order+=("${ROUTER_LIST[$(((k + rep - 1) % nr))]}")
  done
  log "repetition $rep/$REPS: ${order[*]}"
  for key in "${RUN_KEYS[@]}"; do
    for router in "${order[@]}"; do
      read -r -a args <<<"$(scenario_args "$key" "$router")"
      run_one "$router" "$key" "$rep" "${args[@]}"
    done
  done
done
log "all runs done in $(((SECONDS - start_all) / 60)) min $(((SECONDS - start_all) % 60)) s"

"$REPORT" "$OUT"
log "wrote $OUT/table.md and $OUT/latency.svg"
cat "$OUT/table.md"
