#!/usr/bin/env bash
# Installs the external QUIC/HTTP/3 peers used by the interop tests (Debian packages), if missing.
set -euo pipefail

packages=()
# The real peers of the interop tests (Debian packages). Add new ones here.
PEER_PACKAGES=(ngtcp2-client ngtcp2-server chromium tshark)
for p in "${PEER_PACKAGES[@]}"; do
  [ -n "$p" ] || continue
  dpkg -s "$p" >/dev/null 2>&1 || packages+=("$p")
done

if [ ${#packages[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  # tshark asks whether non-root users may capture: answer no (the tests capture as root or with sudo).
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo_cmd debconf-set-selections
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
