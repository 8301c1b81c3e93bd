#!/usr/bin/env bash
# The benchmarks drive HTTP load with wrk from Debian's packages (bench/run.py calls this first).
# Installs it when missing; needs root or passwordless sudo, as on CI machines.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "wrk is missing and this user cannot install it: apt-get install wrk" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null
command -v wrk
