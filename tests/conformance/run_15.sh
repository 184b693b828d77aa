#!/usr/bin/env bash
# Conformance test of the Mephisto 1.5 line: the requests the `mephisto-core`
# 1.5.1 frontend makes, checked at Mephisto's own backend channel (the 1.1.1
# wheel's WebsocketChannel and Packet, as in run.sh) against what the v1.5.2
# backend's handlers read.  Same cache and virtualenv as run.sh.
# Usage: bash tests/conformance/run_15.sh [test name filter ...]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${CONFORMANCE_CACHE:-$ROOT/.ci-cache/conformance}"
PYTHON="${PYTHON:-python3}"
MEPHISTO_VERSION="1.1.1"
WHEEL_NAME="mephisto-${MEPHISTO_VERSION}-py3-none-any.whl"
# Runtime dependencies of the imported modules only (module-level imports of
# websocket_channel.py, channel.py, packet.py, operations/datatypes.py,
# utils/logger_core.py, utils/rich.py): websockets and rich.
REQUIREMENTS=("websockets>=10.1,<11" "rich>=12.5.1,<13")

mkdir -p "$CACHE"

# 1. The mephisto wheel, downloaded once and unpacked once.
WHEEL="$CACHE/$WHEEL_NAME"
if [[ ! -f "$WHEEL" ]]; then
    echo "conformance: downloading mephisto==$MEPHISTO_VERSION"
    "$PYTHON" -m pip download --quiet --no-deps "mephisto==$MEPHISTO_VERSION" -d "$CACHE"
fi
UNPACKED="$CACHE/mephisto-$MEPHISTO_VERSION"
if [[ ! -f "$UNPACKED/.unpacked" ]]; then
    rm -rf "$UNPACKED"
    "$PYTHON" -m zipfile -e "$WHEEL" "$UNPACKED"
    touch "$UNPACKED/.unpacked"
fi

# 2. A virtualenv with only the channel's runtime dependencies.
VENV="$CACHE/venv"
STAMP="$VENV/.conformance-requirements"
WANT="${REQUIREMENTS[*]}"
if [[ ! -x "$VENV/bin/python" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
    echo "conformance: creating virtualenv in $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
    printf '%s' "$WANT" > "$STAMP"
fi

# 3. The switch binary.
if [[ -z "${SWITCHYARD_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release --bin switchyard)
    SWITCHYARD_BIN="$ROOT/target/release/switchyard"
fi
if [[ ! -x "$SWITCHYARD_BIN" ]]; then
    echo "conformance: switchyard binary not found at $SWITCHYARD_BIN" >&2
    exit 2
fi

# 4. The tests (they start and stop the switch themselves).
export SWITCHYARD_BIN
export MEPHISTO_WHEEL_DIR="$UNPACKED"
export PYTHONDONTWRITEBYTECODE=1
exec "$VENV/bin/python" "$HERE/test_mephisto_15.py" "$@"
