#!/usr/bin/env bash
# Browser tests: every tests/browser/*.test.mjs, run with `node --test`
# against the built switch in Debian's chromium (driven by playwright-core).
# Installs what is missing: chromium (apt) and tests/browser/node_modules
# (npm ci). Screenshots go to target/test-artifacts/.
#
# Usage: bash tests/browser/run.sh [extra node --test arguments]
# SWITCHYARD_BIN: the binary (default target/release/switchyard, built here
# if absent). CHROMIUM: the browser (default: chromium on PATH).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

# 1. Node (20 or newer: node:test, global fetch).
if ! command -v node >/dev/null 2>&1; then
    echo "browser tests: installing nodejs"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "browser tests: installing npm"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm
fi
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "$NODE_MAJOR" -lt 20 ]]; then
    echo "browser tests: node $(node --version) is too old (20 or newer needed)" >&2
    exit 2
fi

# 2. Chromium (Debian's build; playwright downloads no browser).
if [[ -z "${CHROMIUM:-}" ]] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    echo "browser tests: installing chromium"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

# 3. playwright-core, at the version package-lock.json pins.
if [[ ! -d "$HERE/node_modules/playwright-core" ]]; then
    echo "browser tests: npm ci in tests/browser"
    (cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

# 4. The switch binary.
if [[ -z "${SWITCHYARD_BIN:-}" ]]; then
    SWITCHYARD_BIN="$ROOT/target/release/switchyard"
    if [[ ! -x "$SWITCHYARD_BIN" ]]; then
        cargo build --release --bin switchyard
    fi
fi
if [[ ! -x "$SWITCHYARD_BIN" ]]; then
    echo "browser tests: switchyard binary not found at $SWITCHYARD_BIN" >&2
    exit 2
fi
export SWITCHYARD_BIN

# 5. The tests (each file starts and stops its own switch).
mkdir -p "$ROOT/target/test-artifacts"
shopt -s nullglob
TESTS=("$HERE"/*.test.mjs)
if [[ ${#TESTS[@]} -eq 0 ]]; then
    echo "browser tests: no *.test.mjs in $HERE" >&2
    exit 2
fi
exec node --test "$@" "${TESTS[@]}"
