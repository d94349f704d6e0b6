#!/usr/bin/env bash
# Runs every Tandem test on a fresh Debian machine with Swift: installs what is missing (Debian packages through
# apt-get, Python test clients into a virtualenv under .build/), builds, runs the Swift test suites (the broker
# contract also against a redis-server started here on a free loopback port), then the end-to-end checks: SSE
# clients we did not write, several nodes sharing one Redis, and both pages in headless Chromium. Prints each step.
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

# Debian packages the build and the tests need, as "command:package" pairs; a few are checked another way below.
needed=()
for pair in python3:python3 curl:curl redis-server:redis-server redis-cli:redis-tools pkg-config:pkg-config \
    chromium:chromium chromedriver:chromium-driver zbarimg:zbar-tools nginx:nginx; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || needed+=("${pair##*:}")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || needed+=(python3-venv)
# hiredis (the Redis broker) and libqrencode (the QR codes) are linked by the build.
[ -f /usr/include/hiredis/hiredis.h ] || needed+=(libhiredis-dev)
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
# Reinstalled whenever Tests/e2e/requirements*.txt change (their checksum is kept in the virtualenv).
wanted=$(cat Tests/e2e/requirements.txt Tests/e2e/requirements-axe.txt | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/requirements.sha256" 2>/dev/null)" != "$wanted" ]; then
    step "Installing the Python test clients and Selenium into $venv (Tests/e2e/requirements.txt)"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r Tests/e2e/requirements.txt
    # Only axe-core's script from this one, not its Playwright dependency (see the file).
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r Tests/e2e/requirements-axe.txt
    echo "$wanted" > "$venv/requirements.sha256"
fi

step "Building Tandem and its tests (swift build --build-tests)"
swift build --build-tests

redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis_dir=$(mktemp -d)
step "Starting redis-server for the broker contract on 127.0.0.1:$redis_port"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$redis_dir" \
    --daemonize yes --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log"
stop_redis() {
    local status=$?
    if [ -f "$redis_dir/redis.pid" ]; then
        local pid
        pid=$(cat "$redis_dir/redis.pid")
        kill "$pid" 2>/dev/null || true
        # Redis still writes its log while it exits: wait for it (up to 5 s) before removing its folder.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$redis_dir" || true
    [ -n "${cluster_dir:-}" ] && scripts/redis-cluster.sh stop "$cluster_dir/nodes" || true
    rm -rf "${cluster_dir:-}" || true
    exit "$status"
}
trap stop_redis EXIT
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

cluster_dir=$(mktemp -d)
step "Starting a Redis Cluster for the cluster tests: six redis-server --cluster-enabled yes (3 masters, 3 replicas) on free loopback ports (scripts/redis-cluster.sh)"
cluster_nodes=$(scripts/redis-cluster.sh start "$cluster_dir/nodes")
echo "cluster nodes: $cluster_nodes"

step "Swift tests: HTTP layer, broker contract (memory and Redis), Redis Cluster slots and topology, app integration over real sockets, the bench's command line (swift test)"
TANDEM_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0" TANDEM_TEST_REDIS_CLUSTER_NODES="$cluster_nodes" swift test --skip-build

step "End-to-end against the real binary: SSE through httpx-sse and sseclient-py; two nodes and one Redis; the PC and phone pages in headless Chromium, QR read by zbarimg (pytest Tests/e2e, two at a time; screenshots in test-artifacts/browser/)"
# Two workers (pytest-xdist): most of these tests wait on browsers, timers and grace periods, so two at once take
# about 8-9 minutes instead of 11 on two cores; three at once made timing-sensitive tests fail on such a machine.
# Tests go to whichever worker is free, except the files marked `xdist_group`, each run whole by one worker
# (test_openapi.py checks at its end what its earlier tests saw; test_redis_cluster.py's six-node cluster once).
TANDEM_BINARY="$PWD/.build/debug/tandem" "$venv/bin/python" -m pytest -q -n 2 --dist loadgroup Tests/e2e

step "Benchmark client smoke test: tandem-bench smoke against the debug binary (memory broker, a few seconds)"
swift build --product tandem-bench
# --no-charts: no bench-charts/ left in the checkout by every test run (SmokeRunTests checks the charts, in a temporary folder).
.build/debug/tandem-bench smoke --tandem "$PWD/.build/debug/tandem" --no-charts

step "All tests passed"
