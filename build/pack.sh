#!/usr/bin/env bash
# Packs every library under src/ (nupkg + snupkg with README, license, XML docs) into artifacts/packages.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet pack KestrelQuic.sln -c Release --nologo -o artifacts/packages "$@"
