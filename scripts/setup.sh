#!/usr/bin/env bash
# Installs the Debian packages fela builds against, only those that are missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev libfftw3-dev nlohmann-json3-dev
      libcli11-dev libgtest-dev libzstd-dev libpcre2-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "fela setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
