#!/usr/bin/env bash
# Runs every test of the solution. Installs the real peers the tests talk to (Debian packages) when missing,
# so that it passes on a fresh Debian 12 machine with only the .NET SDK. Usage: build/test.sh [dotnet test args]
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/install-peers.sh"

dotnet test KestrelQuic.sln -c Release --nologo --logger "console;verbosity=normal" "$@"
