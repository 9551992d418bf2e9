#!/usr/bin/env bash
# Interop matrix (issue 8): every QUIC interop runner case against ngtcp2's gtlsclient (our server), ngtcp2's
# gtlsserver (our client) and headless Chromium (our server), with faults from the tests' UDP relay. Prints a
# table of case x role and exits non-zero if any case fails.
# Usage: build/interop.sh [--cases handshake,transfer,...] [--roles server,client,chromium] [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
"$(dirname "$0")/install-peers.sh"
dotnet build build/interop/KestrelQuic.Interop -c Release --nologo -v quiet
exec dotnet build/interop/KestrelQuic.Interop/bin/Release/net10.0/KestrelQuic.Interop.dll "$@"
