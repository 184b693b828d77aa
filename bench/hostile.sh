#!/usr/bin/env bash
# The hostile-load benchmark: scenario (a) of BENCHMARKS.md (100 agents x 10
# live updates/s through one backend) measured calm and, against a fresh
# switch, while a set of abusive peers (bench/src/bin/hostile.rs) runs
# against the same switch: floods of `alive` with fresh ids, frames over the
# limit (and a header announcing 4 GiB) on `/`, `/monitor` and `/gateway`,
# `request_statuses` from sockets that are not the backend, slow readers,
# and garbage on every port (HTTP, the WebSocket paths, HTTP bodies, the TCP
# client socket). The honest agents' p99 and loss are reported next to the
# calm run's, with the switch's peak RSS and whether it lived.
#
# Target: no loss, p99 within 2x of the calm run, RSS bounded.
#
# Everything runs on 127.0.0.1, bounded in count and time, and stops by
# itself. Runs alternate calm/hostile (a repetition starts with the other
# kind than the last one did).
#
# Usage: bash bench/hostile.sh [--reps N] [--duration S] [--out DIR]
#          [--switch PATH] [--no-build] [--quick] [--rss-cap-mib N]
#          [--skip LIST]
# --skip: attacks to leave out (see `target/release/hostile --help`), e.g.
# gateway_bomb, which aborts a switch without an uplink decode limit at once.
# --rss-cap-mib: a switch whose RSS passes N MiB (default 2048) is killed
# and the run recorded as failed ("killed_over_rss_cap").
# Output: DIR/runs.jsonl (one JSON line per run: generator summary, the
# attacks' tally, the switch's fate), DIR/table.md, DIR/logs/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
REPS=1
DURATION=10
WARMUP=2
DRAIN=3
OUT=$ROOT/bench/results/hostile
BUILD=1
SY=$ROOT/target/release/switchyard
RSS_CAP_MIB=2048
SKIP=
while [[ $# -gt 0 ]]; do
  case $1 in
    --reps) REPS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --switch) SY=$2; shift 2 ;;
    --rss-cap-mib) RSS_CAP_MIB=$2; shift 2 ;;
    --skip) SKIP=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --quick) DURATION=4; WARMUP=1; DRAIN=2; shift ;;
    -h|--help) sed -n 2,25p "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "--reps must be a positive integer" >&2; exit 2; }

die() { echo "hostile.sh: $*" >&2; exit 1; }

if [[ $BUILD == 1 ]]; then
  (cd "$ROOT" && cargo build --release --bin switchyard >&2 \
    && cargo build -p switchyard-bench --release --bin switchyard-bench --bin hostile >&2)
fi
GEN=$ROOT/target/release/switchyard-bench
HOSTILE=$ROOT/target/release/hostile
for b in "$SY" "$GEN" "$HOSTILE"; do [[ -x $b ]] || die "missing $b (run without --no-build)"; done

mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
RUNS=$OUT/runs.jsonl
: >"$RUNS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-hostile.XXXXXX")

SW_PID= GEN_PID= HOS_PID= SAMPLER_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in $SAMPLER_PID $HOS_PID $GEN_PID $SW_PID; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $SAMPLER_PID $HOS_PID $GEN_PID $SW_PID; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_range 3900 4400

# Peak VmRSS (kB) of $1, sampled every 0.1 s into $2 until it exits. A
# switch past the cap is killed (and $2.killed written), so a switch that
# does not bound its memory cannot take the machine with it.
sample_rss() {
  local pid=$1 file=$2 peak=0 r cap=$((RSS_CAP_MIB * 1024))
  while r=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) && [[ -n $r ]]; do
    if ((r > peak)); then peak=$r; echo "$peak" >"$file"; fi
    if ((r > cap)); then
      echo "$r" >"$file.killed"
      kill -KILL "$pid" 2>/dev/null || true
      return
    fi
    sleep 0.1
  done
}

# run_one KIND REP: a fresh switch, scenario (a), and for KIND=hostile the
# attacks at the same time; appends one JSON line to runs.jsonl.
run_one() {
  local kind=$1 rep=$2
  pick_port; local hp=$PORT_NOW
  pick_port; local tp=$PORT_NOW
  local id="$kind-rep$rep" data=$TMP/data-$hp
  local slog=$OUT/logs/$id.switch.log glog=$OUT/logs/$id.gen.log hlog=$OUT/logs/$id.hostile.log
  rm -rf "$data"
  env -u PORT "$SY" --uart none --tcp "127.0.0.1:$tp" --data-dir "$data" \
    --http "127.0.0.1:$hp" >"$slog" 2>&1 &
  SW_PID=$!
  local deadline=$((SECONDS + 30))
  until port_in_use "$hp"; do
    kill -0 "$SW_PID" 2>/dev/null || die "the switch exited before listening (see $slog)"
    ((SECONDS < deadline)) || die "the switch did not listen within 30 s"
    sleep 0.05
  done
  echo 0 >"$TMP/rss"
  rm -f "$TMP/rss.killed"
  sample_rss "$SW_PID" "$TMP/rss" &
  SAMPLER_PID=$!
  local total
  total=$(awk -v w="$WARMUP" -v d="$DURATION" -v r="$DRAIN" 'BEGIN {print w + d + r + 2}')
  echo '{}' >"$TMP/hostile.out"
  if [[ $kind == hostile ]]; then
    "$HOSTILE" --http "127.0.0.1:$hp" --tcp "127.0.0.1:$tp" --duration "$total" \
      ${SKIP:+--skip "$SKIP"} \
      >"$TMP/hostile.out" 2>"$hlog" &
    HOS_PID=$!
  fi
  local grc=0
  "$GEN" --url "ws://127.0.0.1:$hp/" --router-pid "$SW_PID" --agents 100 --rate 10 \
    --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" >"$TMP/gen.out" 2>"$glog" || grc=$?
  if [[ -n $HOS_PID ]]; then
    wait "$HOS_PID" || true
    HOS_PID=
  fi
  # The switch's fate: still running, still answering /is_alive.
  local alive=false answers=false
  kill -0 "$SW_PID" 2>/dev/null && alive=true
  if curl -fsS -m 5 "http://127.0.0.1:$hp/is_alive" >/dev/null 2>&1; then answers=true; fi
  curl -sS -m 5 "http://127.0.0.1:$hp/metrics" >"$OUT/logs/$id.metrics.txt" 2>/dev/null || true
  kill -TERM "$SW_PID" 2>/dev/null || true
  local src=0
  for _ in $(seq 100); do kill -0 "$SW_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SW_PID" 2>/dev/null || true
  wait "$SW_PID" 2>/dev/null || src=$?
  SW_PID=
  kill -TERM "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=
  local peak
  peak=$(cat "$TMP/rss")
  local gen_json
  gen_json=$(grep -m1 '^{' "$TMP/gen.out" || echo null)
  local hos_json
  hos_json=$(grep -m1 '^{' "$TMP/hostile.out" || echo null)
  local killed=false
  [[ -f $TMP/rss.killed ]] && killed=true
  local aborted
  aborted=$(grep -c -E 'memory allocation of|panicked|SIGABRT|Aborted' "$slog" || true)
  jq -cn --arg kind "$kind" --argjson rep "$rep" --argjson gen "$gen_json" \
    --argjson hostile "$hos_json" --argjson alive "$alive" --argjson answers "$answers" \
    --argjson peak "$peak" --argjson grc "$grc" --argjson src "$src" --argjson aborted "$aborted" \
    --argjson killed "$killed" \
    '{kind: $kind, rep: $rep, result: $gen, generator_exit: $grc, attacks: $hostile.attacks,
      skipped: $hostile.skipped,
      switch: {alive_at_end: $alive, answered_is_alive: $answers, peak_rss_kb: $peak,
               exit_status_after_sigterm: $src, abort_lines_in_log: $aborted,
               killed_over_rss_cap: $killed}}' >>"$RUNS"
  gzip -f "$slog"
  rm -rf "$data"
  log "  $id: $(grep -E '^   sent' "$glog" | sed 's/^ *//' || echo 'no summary') | peak rss ${peak} kB | alive $alive | killed over the RSS cap: $killed"
}

log "results: $OUT"
for ((rep = 1; rep <= REPS; rep++)); do
  if ((rep % 2 == 1)); then order=(calm hostile); else order=(hostile calm); fi
  for kind in "${order[@]}"; do
    log "repetition $rep/$REPS: $kind"
    run_one "$kind" "$rep"
  done
done

# The table: medians over the repetitions of each kind.
python3 - "$RUNS" "$OUT/table.md" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fig(kind, f):
    xs = [f(r) for r in runs if r["kind"] == kind]
    # Counts of runs are summed, figures are medians.
    if f in COUNTS:
        return sum(x for x in xs if x is not None)
    return med(xs)
def g(r, *path):
    v = r
    for p in path:
        if not isinstance(v, dict) or p not in v:
            return None
        v = v[p]
    return v
rows = [
    ("updates sent in the window", lambda r: g(r, "result", "sent")),
    ("updates lost", lambda r: g(r, "result", "lost")),
    ("latency p50, ms", lambda r: g(r, "result", "latency_ms", "p50")),
    ("latency p99, ms", lambda r: g(r, "result", "latency_ms", "p99")),
    ("latency max, ms", lambda r: g(r, "result", "latency_ms", "max")),
    ("heartbeats unanswered", lambda r: (g(r, "result", "heartbeats", "sent") or 0) - (g(r, "result", "heartbeats", "answered") or 0) if g(r, "result") else None),
    ("heartbeat RTT p99, ms", lambda r: g(r, "result", "heartbeats", "rtt_ms", "p99")),
    ("switch peak RSS, MiB", lambda r: round(g(r, "switch", "peak_rss_kb") / 1024, 1) if g(r, "switch", "peak_rss_kb") else None),
    ("switch alive at the end (runs)", lambda r: 1 if g(r, "switch", "alive_at_end") and g(r, "switch", "answered_is_alive") else 0),
    ("switch killed over the RSS cap (runs)", lambda r: 1 if g(r, "switch", "killed_over_rss_cap") else 0),
]
COUNTS = {rows[8][1], rows[9][1]}
n = {k: sum(1 for r in runs if r["kind"] == k) for k in ("calm", "hostile")}
out = ["| scenario (a), median of %d/%d runs | calm | hostile | hostile/calm |" % (n["calm"], n["hostile"]),
       "|---|---|---|---|"]
for name, f in rows:
    c, h = fig("calm", f), fig("hostile", f)
    ratio = "%.2f" % (h / c) if isinstance(c, (int, float)) and isinstance(h, (int, float)) and c else ""
    out.append("| %s | %s | %s | %s |" % (name, c, h, ratio))
c99, h99 = fig("calm", rows[3][1]), fig("hostile", rows[3][1])
hostile_runs = [r for r in runs if r["kind"] == "hostile"]
# A run whose generator sent nothing (the switch was gone) lost everything.
lost = sum((g(r, "result", "lost") or 0) if (g(r, "result", "sent") or 0) > 0 else 1
           for r in hostile_runs)
rss = fig("hostile", rows[7][1])
alive = all(g(r, "switch", "alive_at_end") and g(r, "switch", "answered_is_alive")
            for r in runs if r["kind"] == "hostile")
ok_p99 = bool(c99) and bool(h99) and lost == 0 and h99 <= 2 * c99
out.append("")
out.append("Target: no loss (%s), p99 within 2x of calm (%s), switch alive (%s), peak RSS %s MiB." % (
    "met" if lost == 0 else "NOT met", "met" if ok_p99 else "NOT met", "met" if alive else "NOT met", rss))
skipped = sorted({s for r in hostile_runs for s in (g(r, "skipped") or [])})
if skipped:
    out.append("")
    out.append("Attacks left out: %s." % ", ".join(skipped))
out.append("")
out.append("What the attacks saw (last hostile run):")
last = [r for r in runs if r["kind"] == "hostile"][-1:]
for r in last:
    for name, t in (r.get("attacks") or {}).items():
        out.append("- `%s`: %s" % (name, json.dumps(t, sort_keys=True)))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
