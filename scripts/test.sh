#!/usr/bin/env bash
# Runs every Tandem test on a fresh Debian machine with Swift: installs what is missing (Debian packages through
# apt-get, Python test clients into a virtualenv under .build/), builds, runs the Swift test suites, then the
# end-to-end checks with SSE clients we did not write. Prints each step. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

# Debian packages the tests need, as "command:package" pairs.
needed=()
for pair in python3:python3 curl:curl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || needed+=("${pair##*:}")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || needed+=(python3-venv)
if [ ${#needed[@]} -gt 0 ]; then
    step "Installing Debian packages: ${needed[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${needed[@]}"
fi

venv=.build/test-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import httpx_sse, sseclient, pytest' >/dev/null 2>&1; then
    step "Installing the Python test clients into $venv (Tests/e2e/requirements.txt)"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r Tests/e2e/requirements.txt
fi

step "Building Tandem and its tests (swift build --build-tests)"
swift build --build-tests

step "Swift tests: HTTP layer, broker contract, app integration over real sockets (swift test)"
swift test --skip-build

step "End-to-end: the SSE stream through httpx-sse and sseclient-py against the real binary (pytest Tests/e2e)"
TANDEM_BINARY="$PWD/.build/debug/tandem" "$venv/bin/python" -m pytest -q Tests/e2e

step "All tests passed"
