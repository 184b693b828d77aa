#!/usr/bin/env bash
# The wheel as a Mephisto user gets it: build it (scripts/wheel), install it
# with pip into a fresh virtualenv, check that `switchyard` is on the venv's
# PATH and that `switchyard mephisto-root` names the installed launcher, then
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

SWITCHYARD_LAUNCHER="$ROOT_DIR/server.js" bash "$HERE/run.sh" "$@"
