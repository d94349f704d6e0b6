#!/usr/bin/env bash
# Builds Tandem (release) and runs it with the in-memory broker: no Redis needed. Arguments are passed to `tandem`;
# settings come from environment variables (PORT=9090 scripts/run.sh) and config.json. Installs libqrencode-dev
# through apt-get when it is missing. Prints each step.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '==> %s\n' "$*" >&2; }

if ! command -v swift >/dev/null 2>&1; then
    echo "swift is not on PATH: install Swift 6 (https://www.swift.org/install/linux/) first" >&2
    exit 1
fi

# The build links Debian's libhiredis (the Redis broker) and libqrencode (the QR codes); install what is missing.
needed=()
[ -f /usr/include/hiredis/hiredis.h ] || needed+=(libhiredis-dev)
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libqrencode; } || needed+=(libqrencode-dev pkg-config)
if [ ${#needed[@]} -gt 0 ]; then
    step "Installing Debian packages: ${needed[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${needed[@]}"
fi

step "Building tandem (swift build -c release --product tandem); the first build takes a few minutes"
swift build -c release --product tandem
step "Starting .build/release/tandem $* (Ctrl-C stops it)"
exec .build/release/tandem "$@"
