#!/usr/bin/env bash
# End-to-end benchmark harness (issue 6): builds Release and runs the cases against the reference peers on this
# machine, alternating sides run by run (warm-up runs, then at least 5 counted runs), printing min / median / max and
# the ratio of medians, and writing build/bench/results/bench.json.
# Usage: build/bench.sh [CASES, e.g. P3,P6] [--runs N] [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
"$(dirname "$0")/install-peers.sh"
for p in build/bench/KestrelQuic.Benchmarks samples/Http3Server; do
  if [ -d "$p" ]; then dotnet build "$p" -c Release --nologo -v quiet; fi
done
# The sample client is a command-line tool whose start-up P2 times: publish it ReadyToRun, as such a tool ships.
dotnet publish samples/Http3Client -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
  -o build/bench/client --nologo -v quiet
exec dotnet build/bench/KestrelQuic.Benchmarks/bin/Release/net10.0/KestrelQuic.Benchmarks.dll harness "$@"
