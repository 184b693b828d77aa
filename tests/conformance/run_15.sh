#!/usr/bin/env bash
# Conformance test of the Mephisto 1.5 line: the requests the `mephisto-core`
# 1.5.1 frontend makes, checked at Mephisto's own backend channel (the 1.1.1
# wheel's WebsocketChannel and Packet, as in run.sh) against what the v1.5.2
# backend's handlers read. run.sh with the other suite: same cache,
# virtualenv and binary.
# Usage: bash tests/conformance/run_15.sh [test name filter ...]
exec env CONFORMANCE_SUITE=15 bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
