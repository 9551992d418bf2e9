#!/usr/bin/env bash
# Runs every test of the solution, then the interop matrix against the real peers (build/interop.sh). Installs the
# peers the tests talk to (Debian packages) when missing, so that it passes on a fresh Debian 12 machine with only
# the .NET SDK. Usage: build/test.sh [dotnet test args]; with arguments (e.g. --filter) only those tests run, without
# the interop matrix.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/install-peers.sh"

dotnet test KestrelQuic.sln -c Release --nologo --logger "console;verbosity=normal" "$@"

if [ $# -eq 0 ]; then
  "$(dirname "$0")/interop.sh"
fi
