#!/usr/bin/env bash
# Conformance test: the real Mephisto 1.1.1 backend channel (WebsocketChannel,
# Packet, taken unmodified from the PyPI wheel) plus a plain WebSocket agent,
# both talking to a running switchyard.  See tests/conformance/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${CONFORMANCE_CACHE:-$ROOT/.ci-cache/conformance}"
PYTHON="${PYTHON:-python3}"
MEPHISTO_VERSION="1.1.1"
# The suite: test_mephisto_router.py (Mephisto 1.1.1 and mephisto-task), or
# with CONFORMANCE_SUITE=15 test_mephisto_15.py (the 1.5 line; run_15.sh).
SUITE="$HERE/test_mephisto_${CONFORMANCE_SUITE:-router}.py"
[[ -f "$SUITE" ]] || { echo "conformance: no suite $SUITE" >&2; exit 2; }
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

# 3. The switch binary. With SWITCHYARD_LAUNCHER (a Mephisto launcher
#    server.js) and no SWITCHYARD_BIN, the switch is started through
#    `node server.js`, which finds `switchyard` on PATH (see wheel.sh).
if [[ -n "${SWITCHYARD_LAUNCHER:-}" && -z "${SWITCHYARD_BIN:-}" ]]; then
    if ! command -v switchyard >/dev/null 2>&1; then
        echo "conformance: SWITCHYARD_LAUNCHER is set but no switchyard is on PATH" >&2
        exit 2
    fi
    export SWITCHYARD_LAUNCHER
    export MEPHISTO_WHEEL_DIR="$UNPACKED"
    export PYTHONDONTWRITEBYTECODE=1
    exec "$VENV/bin/python" "$SUITE" "$@"
fi
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
exec "$VENV/bin/python" "$SUITE" "$@"
