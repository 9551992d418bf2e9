#!/usr/bin/env bash
# Micro-benchmarks of the packet path with BenchmarkDotNet's MemoryDiagnoser (issue 6, P5).
# Usage: build/bench-micro.sh [BenchmarkDotNet args]   default: every benchmark, short job.
# Results (markdown, CSV, JSON) go to build/bench/results/micro/.
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
if [ ${#args[@]} -eq 0 ]; then args=(--filter '*' --job short); fi
dotnet run -c Release --project build/bench/KestrelQuic.Benchmarks -- \
  --artifacts build/bench/results/micro --exporters json markdown "${args[@]}"
