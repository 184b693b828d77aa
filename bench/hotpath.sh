#!/usr/bin/env bash
# The hot path of two switch binaries, A and B, in the same run: scenario
# (a) p99 latency (100 agents x 10 updates/s), router CPU per 100 000 round
# trips at (a) and at 25 000 round trips/s, and the maximum sustained
# throughput (100 agents, a short --max ramp with bisection). Each
# repetition runs A and B alternately (the first binary alternates too),
# each run against a fresh switch; prints the medians and the B/A ratios.
#
# Usage: bash bench/hotpath.sh A B [--reps N] [--out DIR] [--quick] [--no-max]
#          [--a-args "ARGS"] [--b-args "ARGS"]
#   A, B     switchyard binaries (e.g. a build of the old and of the new code;
#            the same binary twice to compare two settings)
#   --reps   repetitions (default 3)
#   --quick  a smoke run: short windows, one bisection step
#   --no-max skip the throughput ramp (the slowest part)
#   --a-args, --b-args  more flags for A's or B's switch, e.g.
#            --b-args --no-shortcut: what the shortcut gains, as A/B
# Needs target/release/switchyard-bench (cargo build -p switchyard-bench --release).
# Output: DIR/runs.jsonl (one line per run), DIR/table.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
[[ $# -ge 2 ]] || { sed -n 2,19p "$0" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
shift 2
REPS=3
OUT=$ROOT/bench/results/hotpath-$(date -u +%Y%m%dT%H%M%SZ)
QUICK=0
MAX=1
A_ARGS=()
B_ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --reps) REPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --no-max) MAX=0; shift ;;
    --a-args) read -r -a A_ARGS <<<"$2"; shift 2 ;;
    --b-args) read -r -a B_ARGS <<<"$2"; shift 2 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
GEN=$ROOT/target/release/switchyard-bench
for b in "$A" "$B" "$GEN"; do [[ -x $b ]] || { echo "missing $b" >&2; exit 1; }; done
if [[ $QUICK == 1 ]]; then
  FIXED=(--duration 3 --warmup 1 --drain 1)
  MAXR=(--duration 2 --warmup 0.5 --drain 1 --max-time 30 --bisect-steps 1)
else
  FIXED=(--duration 10 --warmup 2 --drain 3)
  MAXR=(--duration 4 --warmup 1 --drain 2 --max-time 120 --bisect-steps 3)
fi

mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
RUNS=$OUT/runs.jsonl
: >"$RUNS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-hotpath.XXXXXX")
SW_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $SW_PID ]] && kill -TERM "$SW_PID" 2>/dev/null && wait "$SW_PID" 2>/dev/null
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_range 4400 4900

# run_one LABEL BIN REP SCENARIO ARGS...: fresh switch, one generator run.
run_one() {
  local label=$1 bin=$2 rep=$3 scen=$4
  shift 4
  pick_port
  local port=$PORT_NOW id="$scen-$label-rep$rep" data=$TMP/data extra=()
  if [[ $label == A ]]; then extra=("${A_ARGS[@]}"); else extra=("${B_ARGS[@]}"); fi
  rm -rf "$data"
  env -u PORT "$bin" --uart none --tcp none --data-dir "$data" --http "127.0.0.1:$port" \
    "${extra[@]}" >"$OUT/logs/$id.switch.log" 2>&1 &
  SW_PID=$!
  wait_listening "$SW_PID" "$port" "$label"
  "$GEN" --url "ws://127.0.0.1:$port/" --router-pid "$SW_PID" "$@" \
    >"$TMP/gen.out" 2>"$OUT/logs/$id.gen.log" || true
  kill -TERM "$SW_PID" 2>/dev/null || true
  wait "$SW_PID" 2>/dev/null || true
  SW_PID=
  gzip -f "$OUT/logs/$id.switch.log"
  local line
  line=$(grep '^{' "$TMP/gen.out" | tail -n 1 || true)
  [[ -n $line ]] || line=null
  jq -cn --arg bin "$label" --arg scen "$scen" --argjson rep "$rep" --argjson r "$line" \
    '{bin: $bin, scenario: $scen, rep: $rep, result: $r}' >>"$RUNS"
  log "  $id: $(grep -E '^(   sent|== max:)' "$OUT/logs/$id.gen.log" | tail -n 1 | sed 's/^ *//')"
}

log "A = $A ${A_ARGS[*]}"
log "B = $B ${B_ARGS[*]}"
log "results: $OUT"
for ((rep = 1; rep <= REPS; rep++)); do
  if ((rep % 2 == 1)); then order=("A:$A" "B:$B"); else order=("B:$B" "A:$A"); fi
  for scen in a e $([[ $MAX == 1 ]] && echo c); do
    for lb in "${order[@]}"; do
      label=${lb%%:*} bin=${lb#*:}
      case $scen in
        a) run_one "$label" "$bin" "$rep" a --agents 100 --rate 10 "${FIXED[@]}" ;;
        e) run_one "$label" "$bin" "$rep" e --agents 100 --rate 250 "${FIXED[@]}" ;;
        c) run_one "$label" "$bin" "$rep" c --max --agents 100 --start-rate 2000 --step-factor 2 "${MAXR[@]}" ;;
      esac
    done
  done
done

python3 - "$RUNS" "$OUT/table.md" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def vals(b, scen, f):
    out = []
    for r in runs:
        if r["bin"] == b and r["scenario"] == scen and r["result"]:
            try:
                v = f(r["result"])
            except (KeyError, TypeError):
                v = None
            if v is not None:
                out.append(v)
    return out
rows = [
    ("(a) p99 latency, ms", "a", lambda r: r["latency_ms"]["p99"]),
    ("(a) updates lost", "a", lambda r: r["lost"]),
    ("(a) router CPU s per 100k round trips", "a", lambda r: r["router"]["cpu_s_per_100k"]),
    ("25 000/s: p99 latency, ms", "e", lambda r: r["latency_ms"]["p99"]),
    ("25 000/s: router CPU s per 100k round trips", "e", lambda r: r["router"]["cpu_s_per_100k"]),
    ("max sustained throughput, round trips/s", "c", lambda r: r["max_throughput"]),
]
out = ["| figure (median [min-max]) | A | B | B/A |", "|---|---|---|---|"]
def num(x):
    return "%.0f" % x if abs(x) >= 1000 else "%.4g" % x
def show(xs):
    if not xs:
        return "-"
    return "%s [%s-%s]" % (num(statistics.median(xs)), num(min(xs)), num(max(xs)))
for name, scen, f in rows:
    a, b = vals("A", scen, f), vals("B", scen, f)
    if not a and not b:
        continue
    ratio = ""
    if a and b and statistics.median(a):
        ratio = "%.3f" % (statistics.median(b) / statistics.median(a))
    out.append("| %s | %s | %s | %s |" % (name, show(a), show(b), ratio))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
