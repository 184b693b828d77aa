#!/usr/bin/env bash
# RSS per idle agent of two switch binaries, A and B, in the same run:
# N idle agents connect (each says `alive` and heartbeats), the switch's
# RSS is read before and after, and the difference divided by N. Each
# repetition runs A and B alternately (the first binary alternates too),
# each against a fresh switch (`--uart none --tcp none`, a fresh data dir).
#
# Usage: bash bench/idle.sh A B [--agents N] [--reps R] [--out DIR]
#          [--a-args "ARGS"] [--b-args "ARGS"]
# Needs target/release/switchyard-bench (cargo build -p switchyard-bench --release).
# Output: DIR/idle.jsonl (one line per run), DIR/idle.md (medians, B/A).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
[[ $# -ge 2 ]] || { sed -n 2,11p "$0" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
shift 2
AGENTS=5000
REPS=3
OUT=$ROOT/bench/results/idle-$(date -u +%Y%m%dT%H%M%SZ)
A_ARGS=()
B_ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --agents) AGENTS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --a-args) read -r -a A_ARGS <<<"$2"; shift 2 ;;
    --b-args) read -r -a B_ARGS <<<"$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
BENCH=$ROOT/target/release/switchyard-bench
[[ -x $BENCH ]] || { echo "build it first: cargo build -p switchyard-bench --release" >&2; exit 2; }
mkdir -p "$OUT"
: >"$OUT/idle.jsonl"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
PORT=3390
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# One run: label, binary, extra args. Appends a line to idle.jsonl.
run() {
  local label=$1 bin=$2
  shift 2
  local data=$TMP/data-$label-$RANDOM
  "$bin" --uart none --tcp none --data-dir "$data" --http "127.0.0.1:$PORT" "$@" \
    >"$TMP/switch.log" 2>&1 &
  local pid=$!
  local up=0
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  [[ $up == 1 ]] || { cat "$TMP/switch.log" >&2; kill "$pid"; exit 1; }
  local line
  line=$("$BENCH" --url "ws://127.0.0.1:$PORT/" --connect-only "$AGENTS" --duration 8 \
    --drain 2 --router-pid "$pid" 2>/dev/null | tail -n 1)
  kill -INT "$pid"
  wait "$pid" || true
  python3 -c 'import json,sys; v=json.loads(sys.argv[2]); v["label"]=sys.argv[1]; print(json.dumps(v))' \
    "$label" "$line" >>"$OUT/idle.jsonl"
  python3 -c 'import json,sys; v=json.loads(sys.argv[1]); r=v["router"]; h=v["heartbeats"]; print("   %s: %s kB per agent, %s connected, heartbeats %s/%s" % (sys.argv[2], r["rss_kb_per_agent"], v["connected"], h["answered"], h["sent"]))' \
    "$line" "$label"
}

for rep in $(seq "$REPS"); do
  echo "repetition $rep of $REPS"
  if (( rep % 2 == 1 )); then
    run A "$A" "${A_ARGS[@]}"; run B "$B" "${B_ARGS[@]}"
  else
    run B "$B" "${B_ARGS[@]}"; run A "$A" "${A_ARGS[@]}"
  fi
done

python3 - "$OUT" "$A" "$B" "$AGENTS" <<'PY'
import json, statistics, sys
out, a, b, agents = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
runs = [json.loads(l) for l in open(f"{out}/idle.jsonl")]
def vals(label):
    return [r["router"]["rss_kb_per_agent"] for r in runs if r["label"] == label]
def ok(label):
    return all(r["connected"] == int(agents) and r["heartbeats"]["answered"] == r["heartbeats"]["sent"]
               for r in runs if r["label"] == label)
va, vb = vals("A"), vals("B")
ma, mb = statistics.median(va), statistics.median(vb)
lines = [
    f"RSS per idle agent, {agents} idle agents, fresh switch per run, A and B alternating,"
    f" {len(va)} repetitions.",
    f"A = `{a}`, B = `{b}`.",
    "",
    "| | A kB per agent | B kB per agent | B/A |",
    "|---|---|---|---|",
]
for i, (x, y) in enumerate(zip(va, vb), 1):
    lines.append(f"| run {i} | {x:.3f} | {y:.3f} | {y / x:.3f} |")
lines.append(f"| median | {ma:.3f} | {mb:.3f} | {mb / ma:.3f} |")
lines.append("")
lines.append(f"Every agent connected and every heartbeat answered: A {ok('A')}, B {ok('B')}.")
open(f"{out}/idle.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
