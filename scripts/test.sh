#!/usr/bin/env bash
# Runs every Tandem test on a fresh Debian machine with Swift: installs what is missing (Debian packages through
# apt-get, Python test clients into a virtualenv under .build/), builds, runs the Swift test suites, then the
# end-to-end checks: SSE clients we did not write, and both pages in headless Chromium. Prints each step.
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

# Debian packages the build and the tests need, as "command:package" pairs; a few are checked another way below.
needed=()
for pair in python3:python3 curl:curl pkg-config:pkg-config chromium:chromium chromedriver:chromium-driver zbarimg:zbar-tools; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || needed+=("${pair##*:}")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || needed+=(python3-venv)
# libqrencode draws the QR codes; the build links it (Sources/CQRencode).
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libqrencode; } || needed+=(libqrencode-dev)
# A Japanese font, so that the browser test's screenshots show the article's words instead of empty boxes.
{ command -v fc-list >/dev/null 2>&1 && fc-list :lang=ja | grep -q .; } || needed+=(fonts-ipafont-gothic)
if [ ${#needed[@]} -gt 0 ]; then
    step "Installing Debian packages: ${needed[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${needed[@]}"
fi

venv=.build/test-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import httpx_sse, sseclient, pytest, selenium' >/dev/null 2>&1; then
    step "Installing the Python test clients and Selenium into $venv (Tests/e2e/requirements.txt)"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r Tests/e2e/requirements.txt
fi

step "Building Tandem and its tests (swift build --build-tests)"
swift build --build-tests

step "Swift tests: HTTP layer, broker contract, app integration over real sockets (swift test)"
swift test --skip-build

step "End-to-end against the real binary: the SSE stream through httpx-sse and sseclient-py; the PC and phone pages in headless Chromium, QR read by zbarimg (pytest Tests/e2e; screenshots in test-artifacts/browser/)"
TANDEM_BINARY="$PWD/.build/debug/tandem" "$venv/bin/python" -m pytest -q Tests/e2e

step "All tests passed"
