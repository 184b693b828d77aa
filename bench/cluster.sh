#!/usr/bin/env bash
# Cluster mode against one switch, in the same run (CLUSTER.md section 3):
# nats-server plus 1, 2 and 3 switches with --cluster, and the single switch
# without it. Agents are spread round-robin over the switches, the backend
# is on the first. Per configuration and repetition, each on fresh
# processes (and a fresh JetStream store):
#   (b) 1000 agents x 1 update/s: p50 and p99 latency; CPU of the switches
#       (summed) and of nats-server, per 100 000 round trips;
#   (c) the maximum sustained throughput with 100 agents (a --max ramp);
#   idle: 3000 agents connected and silent but for heartbeats; the RSS they
#       add, summed over the switches, per agent.
# On one 2-core box every process shares the same cores: this measures what
# the cluster costs, not what more machines would gain.
#
# Usage: bash bench/cluster.sh [--reps N] [--out DIR] [--quick]
# Needs target/release/switchyard, target/release/switchyard-bench
# (cargo build --release --bin switchyard; cargo build --release -p
# switchyard-bench) and
# nats-server (NATS_SERVER, or target/nats/bin/nats-server as scripts/test
# installs it).
# Output: DIR/runs.jsonl (one line per run), DIR/table.md, DIR/plot.svg.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
REPS=3
OUT=$ROOT/bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ)
QUICK=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --reps) REPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) sed -n 2,23p "$0" >&2; exit 2 ;;
  esac
done
SW=$ROOT/target/release/switchyard
GEN=$ROOT/target/release/switchyard-bench
NATS=${NATS_SERVER:-$ROOT/target/nats/bin/nats-server}
for b in "$SW" "$GEN" "$NATS"; do [[ -x $b ]] || { echo "missing $b" >&2; exit 1; }; done
if [[ $QUICK == 1 ]]; then
  FIXED=(--duration 3 --warmup 1 --drain 1)
  MAXR=(--duration 2 --warmup 0.5 --drain 1 --max-time 20 --bisect-steps 1)
  IDLE=500
else
  FIXED=(--duration 10 --warmup 2 --drain 3)
  MAXR=(--duration 4 --warmup 1 --drain 2 --max-time 60 --bisect-steps 2)
  IDLE=3000
fi

mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
RUNS=$OUT/runs.jsonl
: >"$RUNS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-cluster.XXXXXX")
PIDS=()
NATS_PID=
stop_all() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  if [[ -n $NATS_PID ]]; then
    kill -TERM "$NATS_PID" 2>/dev/null || true
    wait "$NATS_PID" 2>/dev/null || true
    NATS_PID=
  fi
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_range 5400 5900
# CPU seconds (user + system) of a process so far.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
sum() { awk '{s += $1} END {printf "%.3f", s}'; }

# start K ID: K switches (0: one switch without a cluster); sets URLS, PIDS.
start() {
  local k=$1 id=$2 n=$k cluster=()
  rm -rf "$TMP/run"
  mkdir -p "$TMP/run"
  if ((k > 0)); then
    "$NATS" -js -sd "$TMP/run/js" -a 127.0.0.1 -p -1 --ports_file_dir "$TMP/run" \
      >"$OUT/logs/$id.nats.log" 2>&1 &
    NATS_PID=$!
    local ports=$TMP/run/nats-server_$NATS_PID.ports deadline=$((SECONDS + 20))
    until [[ -s $ports ]]; do
      ((SECONDS < deadline)) || { echo "nats-server did not start" >&2; exit 1; }
      sleep 0.05
    done
    cluster=(--cluster "$(jq -r '.nats[0]' "$ports")")
  else
    n=1
  fi
  URLS=()
  for ((i = 1; i <= n; i++)); do
    pick_port
    local port=$PORT_NOW node=()
    ((k > 0)) && node=(--node-id "s$i")
    env -u PORT "$SW" --uart none --tcp none --data-dir "$TMP/run/s$i" \
      --http "127.0.0.1:$port" "${cluster[@]}" "${node[@]}" \
      >"$OUT/logs/$id.s$i.log" 2>&1 &
    PIDS+=($!)
    wait_listening "${PIDS[-1]}" "$port" "switch s$i"
    URLS+=(--url "ws://127.0.0.1:$port/")
  done
}

# run_one CONFIG K REP SCENARIO ARGS...
run_one() {
  local config=$1 k=$2 rep=$3 scen=$4
  shift 4
  local id="$scen-$config-rep$rep"
  start "$k" "$id"
  local sw0 nats0 rss0
  sw0=$(for p in "${PIDS[@]}"; do cpu_s "$p"; done | sum)
  nats0=0
  [[ -n $NATS_PID ]] && nats0=$(cpu_s "$NATS_PID")
  rss0=$(for p in "${PIDS[@]}"; do rss_kb "$p"; done | sum)
  local rss_idle=null
  if [[ $scen == idle ]]; then
    "$GEN" "${URLS[@]}" "$@" >"$TMP/gen.out" 2>"$OUT/logs/$id.gen.log" &
    local gen=$! deadline=$((SECONDS + 60))
    # Every agent bound: sample the switches' RSS while they are held.
    until [[ $(for i in "${!PIDS[@]}"; do
      curl -s "${URLS[$((2 * i + 1))]/ws:/http:}metrics" |
        awk '/^switchyard_actors_live\{kind="Agent"\}/ {print $2}'
    done | sum) == "$IDLE.000" ]]; do
      kill -0 "$gen" 2>/dev/null || break
      ((SECONDS < deadline)) || break
      sleep 0.2
    done
    rss_idle=$(for p in "${PIDS[@]}"; do rss_kb "$p"; done | sum)
    wait "$gen" || true
  else
    # CPU of every switch and of nats-server over the measured window
    # only (not the connecting of the agents), each reported apart.
    local also=()
    for p in "${PIDS[@]}" $NATS_PID; do also+=(--also-pid "$p"); done
    "$GEN" "${URLS[@]}" --backend-url "${URLS[1]}" "${also[@]}" "$@" \
      >"$TMP/gen.out" 2>"$OUT/logs/$id.gen.log" || true
  fi
  local sw1 nats1
  sw1=$(for p in "${PIDS[@]}"; do cpu_s "$p"; done | sum)
  nats1=0
  [[ -n $NATS_PID ]] && nats1=$(cpu_s "$NATS_PID")
  NATS_PID_WAS=$NATS_PID
  stop_all
  local line
  line=$(grep '^{' "$TMP/gen.out" | tail -n 1 || true)
  [[ -n $line ]] || line=null
  jq -cn --arg config "$config" --arg scen "$scen" --argjson rep "$rep" --argjson r "$line" \
    --argjson sw_cpu "$(awk -v a="$sw0" -v b="$sw1" 'BEGIN {printf "%.3f", b - a}')" \
    --argjson nats_cpu "$(awk -v a="$nats0" -v b="$nats1" 'BEGIN {printf "%.3f", b - a}')" \
    --argjson rss0 "$rss0" --argjson rss_idle "$rss_idle" --argjson idle "$IDLE" \
    --argjson nats_pid "${NATS_PID_WAS:-null}" \
    '{config: $config, scenario: $scen, rep: $rep, result: $r, switches_cpu_s: $sw_cpu,
      nats_cpu_s: $nats_cpu, nats_pid: $nats_pid, rss_before_kb: $rss0,
      rss_idle_kb: $rss_idle, idle_agents: $idle}' >>"$RUNS"
  log "  $id: $(grep -E '^(   sent|== max:|   connect)' "$OUT/logs/$id.gen.log" | tail -n 1 | sed 's/^ *//')"
}

log "results: $OUT"
CONFIGS=("single:0" "nats+1:1" "nats+2:2" "nats+3:3")
for ((rep = 1; rep <= REPS; rep++)); do
  for scen in b c idle; do
    for ck in "${CONFIGS[@]}"; do
      config=${ck%%:*} k=${ck#*:}
      case $scen in
        b) run_one "$config" "$k" "$rep" b --agents 1000 --rate 1 "${FIXED[@]}" ;;
        c) run_one "$config" "$k" "$rep" c --max --agents 100 --start-rate 2000 --step-factor 2 "${MAXR[@]}" ;;
        idle) run_one "$config" "$k" "$rep" idle --connect-only "$IDLE" --duration 5 --drain 1 ;;
      esac
    done
  done
done

python3 - "$RUNS" "$OUT/table.md" "${FIXED[*]}" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
configs = ["single", "nats+1", "nats+2", "nats+3"]
def vals(config, scen, f):
    out = []
    for r in runs:
        if r["config"] == config and r["scenario"] == scen and r["result"]:
            try:
                v = f(r)
            except (KeyError, TypeError, ZeroDivisionError):
                v = None
            if v is not None:
                out.append(v)
    return out
# (b): CPU over the measured window only, per process (the generator's
# `also` list: the switches, then nats-server).
def cpu100k(r, nats):
    out = [a["cpu_s_per_100k"] for a in r["result"].get("also", [])
           if (a["pid"] == r.get("nats_pid")) == nats]
    return sum(out) if out and None not in out else None
rows = [
    ("(b) p50 latency, ms", "b", lambda r: r["result"]["latency_ms"]["p50"]),
    ("(b) p99 latency, ms", "b", lambda r: r["result"]["latency_ms"]["p99"]),
    ("(b) updates lost", "b", lambda r: r["result"]["lost"]),
    ("(b) switches' CPU s per 100k round trips", "b", lambda r: cpu100k(r, False)),
    ("(b) nats-server CPU s per 100k round trips", "b",
     lambda r: cpu100k(r, True) if r.get("nats_pid") else None),
    ("(c) max sustained round trips/s", "c", lambda r: r["result"]["max_throughput"]),
    ("idle: KiB per agent, summed over the switches", "idle",
     lambda r: (r["rss_idle_kb"] - r["rss_before_kb"]) / r["idle_agents"] if r["rss_idle_kb"] else None),
]
def each_switch(config):
    """(b) CPU per 100k of each switch apart (s1 holds the backend):
    medians over the repetitions, index by index."""
    per = []
    for r in runs:
        if r["config"] == config and r["scenario"] == "b" and r["result"]:
            xs = [a["cpu_s_per_100k"] for a in r["result"].get("also", [])
                  if a["pid"] != r.get("nats_pid")]
            if xs and None not in xs:
                per.append(xs)
    if not per:
        return "-"
    return " / ".join(num(statistics.median(col)) for col in zip(*per))
def num(x):
    return "%.0f" % x if abs(x) >= 1000 else "%.3g" % x
def show(xs):
    if not xs:
        return "-"
    return "%s [%s-%s]" % (num(statistics.median(xs)), num(min(xs)), num(max(xs)))
out = ["| figure (median [min-max]) | " + " | ".join(configs) + " |",
       "|---|" + "---|" * len(configs)]
for name, scen, f in rows:
    cells = [show(vals(c, scen, f)) for c in configs]
    out.append("| %s | %s |" % (name, " | ".join(cells)))
    if name.startswith("(b) switches'"):
        out.append("| (b) each switch's CPU s per 100k (s1 / s2 / s3) | %s |"
                   % " | ".join(each_switch(c) for c in configs))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))

# plot.svg: three panels, one bar per configuration (the median, a line
# from min to max): (b) p99 latency, (b) CPU per 100k round trips (the
# switches and nats-server stacked), (c) the maximum sustained rate.
def stats(config, scen, f):
    xs = vals(config, scen, f)
    return (statistics.median(xs), min(xs), max(xs)) if xs else None
panels = [
    ("(b) p99 latency, ms", [("switches", "#4477aa", lambda r: r["result"]["latency_ms"]["p99"])]),
    ("(b) CPU s per 100k round trips", [
        ("switches", "#4477aa", lambda r: cpu100k(r, False)),
        ("nats-server", "#ee6677", lambda r: cpu100k(r, True) if r.get("nats_pid") else None)]),
    ("(c) max round trips/s", [("switches", "#4477aa", lambda r: r["result"]["max_throughput"])]),
]
W, H, PAD = 300, 240, 40
svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">'
       % (W * len(panels), H + 30)]
for pi, (title, layers) in enumerate(panels):
    x0 = pi * W
    cols = []
    for c in configs:
        cols.append([stats(c, "c" if title.startswith("(c)") else "b", f) for _, _, f in layers])
    top = max((sum(s[0] for s in col if s) for col in cols), default=1) or 1
    top = max(top, max((s[2] for col in cols for s in col if s), default=0))
    scale = (H - 2 * PAD) / top
    svg.append('<text x="%d" y="16" font-weight="bold">%s</text>' % (x0 + 10, title))
    svg.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000"/>' % (x0 + PAD, H - PAD, x0 + W - 10, H - PAD))
    bw = (W - PAD - 20) / len(configs)
    for ci, (c, col) in enumerate(zip(configs, cols)):
        bx = x0 + PAD + ci * bw + bw * 0.15
        base = H - PAD
        for (name, color, _), st in zip(layers, col):
            if not st:
                continue
            h = st[0] * scale
            svg.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>' % (bx, base - h, bw * 0.7, h, color))
            if len(layers) == 1:
                svg.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000"/>'
                           % (bx + bw * 0.35, base - st[2] * scale, bx + bw * 0.35, base - st[1] * scale))
            base -= h
        total = sum(st[0] for st in col if st)
        svg.append('<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>' % (bx + bw * 0.35, base - 4, num(total)))
        svg.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (bx + bw * 0.35, H - PAD + 14, c))
    if len(layers) > 1:
        for li, (name, color, _) in enumerate(layers):
            svg.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>'
                       % (x0 + PAD + li * 90, H, color, x0 + PAD + li * 90 + 14, H + 9, name))
svg.append("</svg>")
open(sys.argv[2].replace("table.md", "plot.svg"), "w").write("\n".join(svg) + "\n")
PY
