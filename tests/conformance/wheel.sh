#!/usr/bin/env bash
# The wheel as a Mephisto user gets it: build it (scripts/wheel), install it
# with pip into a fresh virtualenv, check that `switchyard` is on the venv's
# PATH and that `switchyard mephisto-root` names the installed launcher, that
# the launcher started in place finds the wheel's binary without PATH, then
# run the Mephisto conformance suite (run.sh) against the installed binary
# started through that launcher: a copy of the folder, `node server.js` in it
# with PORT set, the binary found on PATH, as Mephisto's local architect
# starts its router.
#
# Usage: bash tests/conformance/wheel.sh [test name filters for run.sh]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"

WHEEL="$(bash "$ROOT/scripts/wheel" | tail -n 1)"
echo "wheel: built $WHEEL"

VENV="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-wheel-venv.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-index "$WHEEL"

fail() { echo "wheel: $*" >&2; exit 1; }

# What the venv's PATH (as `activate` sets it) finds.
export PATH="$VENV/bin:$PATH"
unset SWITCHYARD_BIN
FOUND="$(command -v switchyard || true)"
[[ "$FOUND" == "$VENV/bin/switchyard" ]] || fail "switchyard on PATH is '$FOUND', not $VENV/bin/switchyard"
switchyard --version

ROOT_DIR="$(switchyard mephisto-root)"
PREFIX="$("$VENV/bin/python" -c 'import sys; print(sys.prefix)')"
[[ "$ROOT_DIR" == "$(cd "$PREFIX" && pwd -P)/share/switchyard-router/mephisto" ]] ||
    fail "mephisto-root printed '$ROOT_DIR', not the venv's share/switchyard-router/mephisto"
for f in server.js package.json static/index.html; do
    [[ -f "$ROOT_DIR/$f" ]] || fail "the wheel did not install $ROOT_DIR/$f"
    cmp -s "$ROOT_DIR/$f" "$ROOT/deploy/mephisto/$f" || fail "$ROOT_DIR/$f differs from deploy/mephisto/$f"
done
echo "wheel: launcher installed in $ROOT_DIR"

# The launcher started where the wheel installed it, with the venv NOT on
# PATH: it finds the binary by the wheel's layout (<prefix>/bin next to
# <prefix>/share/switchyard-router/mephisto) and serves /is_alive; SIGTERM
# stops it with status 0.
NODE="$(command -v node)"
"$VENV/bin/python" - "$NODE" "$ROOT_DIR/server.js" "$VENV" <<'PY' || fail "the installed launcher did not start the wheel's binary in place"
import json, os, signal, socket, subprocess, sys, time, urllib.request
node, server, venv = sys.argv[1:4]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
data = os.path.join(venv, "in-place-data")
env = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_BIN"}
env.update(PATH="/usr/bin:/bin", PORT=str(port),
           SWITCHYARD_ARGS=f"--data-dir {data} --tcp none --uart none")
proc = subprocess.Popen([node, server], env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
try:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            sys.exit(f"launcher exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/is_alive", timeout=1) as r:
                if json.loads(r.read()) == {"status": "Alive!"}:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit("no /is_alive answer within 30 s")
        try:
            proc.wait(timeout=0.1)  # a poll step
        except subprocess.TimeoutExpired:
            pass
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    first = out.splitlines()[0] if out else ""
    want = f"starting {os.path.realpath(os.path.join(venv, 'bin', 'switchyard'))} "
    if want not in first:
        sys.exit(f"launcher's first line is {first!r}, expected it to contain {want!r}")
    if proc.returncode != 0:
        sys.exit(f"launcher exited with {proc.returncode} after SIGTERM:\n{out}")
    print(f"wheel: launcher in place: {first}")
finally:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
PY

SWITCHYARD_LAUNCHER="$ROOT_DIR/server.js" bash "$HERE/run.sh" "$@"
