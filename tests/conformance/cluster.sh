#!/usr/bin/env bash
# The conformance suite (Mephisto's own WebsocketChannel) in cluster mode:
# a nats-server of its own, two switches of one cluster, the backend on one
# and agents and HTTP on the other (CLUSTER.md, PROTOCOL 1 + scale-out).
# NATS_SERVER names the server binary (scripts/test installs it into
# target/nats/); other variables as run.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
NATS="${NATS_SERVER:-$ROOT/target/nats/bin/nats-server}"
[[ -x "$NATS" ]] || { echo "conformance: no nats-server at $NATS" >&2; exit 2; }

TMP="$(mktemp -d)"
NATS_PID=
cleanup() {
    [[ -n "$NATS_PID" ]] && kill "$NATS_PID" 2>/dev/null && wait "$NATS_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

"$NATS" -js -sd "$TMP/js" -a 127.0.0.1 -p -1 --ports_file_dir "$TMP" >"$TMP/nats.log" 2>&1 &
NATS_PID=$!
PORTS="$TMP/nats-server_${NATS_PID}.ports"
for _ in $(seq 1 200); do
    [[ -s "$PORTS" ]] && break
    kill -0 "$NATS_PID" 2>/dev/null || { cat "$TMP/nats.log" >&2; exit 2; }
    sleep 0.05
done
URL="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nats"][0])' "$PORTS")"
echo "conformance: nats-server on $URL"
CONFORMANCE_CLUSTER="$URL" bash "$HERE/run.sh" "$@"
