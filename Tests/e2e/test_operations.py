"""End-to-end checks of how Tandem runs in production: behind a real nginx, what `/metrics` counts, and what the logs
hold.

- Behind nginx: the sample `deploy/nginx.conf` (its upstream pointed at two nodes sharing one Redis, its `listen`
  moved to a free loopback port) serves the whole flow; each SSE event and each heartbeat comes through nginx as
  soon as it is written (no proxy buffering), the stream outlives several heartbeats, and round robin reaches both
  nodes.
- Metrics: after a flow (and a request for an unknown session) the counters of `/metrics`, parsed with the
  Prometheus client's own parser, moved by exactly the expected amounts, and a second flow doubles them.
- Logs: with `LOG_FORMAT=json` and `LOG_LEVEL=trace`, every line is a JSON object, every request has its line with a
  request id, and the submitted name and phone, the session ID and the reader key appear nowhere.

Needs: pip install -r Tests/e2e/requirements.txt, `redis-server` and `nginx` (Debian: redis-server, nginx), and a
built binary (`swift build --product tandem`), found at $TANDEM_BINARY or .build/debug/tandem.
Run: python3 -m pytest -q Tests/e2e/test_operations.py

Every wait is bounded: HTTP and Redis sockets have timeouts, processes are waited on with deadlines, and the threads
that read streams are daemons the tests only wait on with a deadline. Every process a test starts (redis-server,
nginx's master and its workers, the nodes) is stopped by its PID when the test ends, passed or failed.

Processes, Redis, nodes, streams and requests come from the tandem_e2e package, shared with the other end-to-end
tests.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tandem_e2e.nodes import REPO_ROOT, REQUEST_TIMEOUT, Cluster, Node
from tandem_e2e.phone import (
    expect_input_started,
    expect_ok,
    expect_submitted,
    expect_valid,
    input_started,
    new_session_id,
    submit,
    validate,
)
from tandem_e2e.processes import STARTUP_TIMEOUT, STOP_TIMEOUT, LoggedProcess, free_loopback_port, poll
from tandem_e2e.redis_server import RedisServer
from tandem_e2e.sse import EVENT_WAIT, HEARTBEAT_SECONDS, Stream, flow_events, full_flow

NGINX_SAMPLE = REPO_ROOT / "deploy" / "nginx.conf"

# From sending a request to its event arriving on the stream through nginx.
PROXIED_EVENT_LATENCY = 0.5
# How long a node may take to notice that a stream's client went away (it writes a heartbeat every second).
STREAM_GONE_WAIT = HEARTBEAT_SECONDS * 3 + 3.0


# --------------------------------------------------------------------------------------------------------------
# nginx's workers, found by PID


def _children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc), e.g. nginx's workers under its master."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                text = stat.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the fields after its closing parenthesis.
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(entry))
    return children


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return False
    state = text[text.rfind(")") + 2:].split()[0]
    return state != "Z"


# --------------------------------------------------------------------------------------------------------------
# nginx


def _nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
    )
    if found is None:
        pytest.fail(
            "nginx not found (looked on PATH, /usr/sbin and /usr/local/sbin): install the Debian package `nginx` "
            "(apt-get install nginx); scripts/test.sh installs it when it is missing"
        )
    return found


def nginx_site_config(sample: str, node_ports: list[int], listen_port: int, access_log: Path) -> str:
    """`deploy/nginx.conf` with its upstream's server lines pointed at `node_ports` (the parameters of its first
    server line kept), its `listen 80` moved to a loopback port and its access log's file moved to `access_log` (its
    format kept). Fails when the sample no longer has that shape."""
    server_line = re.compile(r"^(\s*)server\s+\S+?(\s.*)?;\s*(#.*)?$")
    out: list[str] = []
    in_upstream = replaced = False
    servers = listens = access_logs = 0
    for line in sample.splitlines():
        if re.match(r"^\s*upstream\s+\w+\s*\{", line):
            in_upstream = True
        elif in_upstream and re.match(r"^\s*\}", line):
            in_upstream = False
        elif in_upstream and (match := server_line.match(line)):
            servers += 1
            if not replaced:
                indent, parameters = match.group(1), match.group(2) or ""
                out += [f"{indent}server 127.0.0.1:{port}{parameters};" for port in node_ports]
                replaced = True
            continue
        if re.match(r"^\s*listen\s+80\s*;", line):
            listens += 1
            line = re.sub(r"listen\s+80\s*;", f"listen 127.0.0.1:{listen_port};", line)
        if match := re.match(r"^(\s*)access_log\s+\S+\s+(\w+)\s*;", line):
            access_logs += 1
            line = f"{match.group(1)}access_log {access_log} {match.group(2)};"
        out.append(line)
    assert servers >= 1, f"no `server` line in an upstream block of {NGINX_SAMPLE}"
    assert listens == 1, f"expected exactly one `listen 80;` in {NGINX_SAMPLE}, found {listens}"
    assert access_logs == 1, f"expected exactly one `access_log <file> <format>;` in {NGINX_SAMPLE}, found {access_logs}"
    return "\n".join(out) + "\n"


class Nginx:
    """nginx in the foreground (`daemon off`) with a master and one worker, its files all in one temporary folder.
    Stopped by the master's PID; its workers are found by PID and checked (killed if they linger) afterwards."""

    def __init__(self, directory: Path, node_ports: list[int]) -> None:
        self.directory = directory
        self.node_ports = node_ports
        self.port = 0
        self.process: LoggedProcess | None = None
        self.workers: list[int] = []
        self.error_log = directory / "error.log"
        self.access_log = directory / "access.log"

    def _write_config(self) -> Path:
        site = self.directory / "tandem-site.conf"
        site.write_text(nginx_site_config(NGINX_SAMPLE.read_text(encoding="utf-8"), self.node_ports, self.port, self.access_log), encoding="utf-8")
        temp = self.directory / "temp"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (temp / name).mkdir(parents=True, exist_ok=True)
        main = self.directory / "nginx.conf"
        main.write_text(
            "daemon off;\n"
            "master_process on;\n"
            "worker_processes 1;\n"
            f"pid {self.directory / 'nginx.pid'};\n"
            f"error_log {self.error_log} info;\n"
            "events {}\n"
            "http {\n"
            "    access_log off;\n"
            f"    client_body_temp_path {temp / 'client_body'};\n"
            f"    proxy_temp_path {temp / 'proxy'};\n"
            f"    fastcgi_temp_path {temp / 'fastcgi'};\n"
            f"    uwsgi_temp_path {temp / 'uwsgi'};\n"
            f"    scgi_temp_path {temp / 'scgi'};\n"
            f"    include {site};\n"
            "}\n",
            encoding="utf-8",
        )
        return main

    def start(self) -> None:
        binary = _nginx_binary()
        for _ in range(3):  # another process may take the free port between our probe and nginx's bind
            self.port = free_loopback_port()
            self.workers = []
            config = self._write_config()
            check = subprocess.run(
                [binary, "-t", "-c", str(config), "-p", str(self.directory), "-e", str(self.error_log)],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=STARTUP_TIMEOUT,
            )
            assert check.returncode == 0, f"nginx -t refused the generated config:\n{check.stderr}\n{config.read_text()}"
            self.process = LoggedProcess([binary, "-c", str(config), "-p", str(self.directory), "-e", str(self.error_log)],
                                         cwd=self.directory)
            if self._wait_ready(STARTUP_TIMEOUT):
                return
            self.stop()
        pytest.fail(f"nginx did not start listening on 127.0.0.1:{self.port}:\n{self.log()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        if not self.process.wait_ready(self._listening, timeout):
            return False
        # Listening; remember the workers so that they can be checked when the master stops.
        poll(self._found_workers, max(0.0, deadline - time.monotonic()), 0.05)
        return bool(self.workers)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def _found_workers(self) -> bool:
        assert self.process is not None
        self.workers = _children_of(self.process.pid)
        return bool(self.workers)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        text = self.error_log.read_text(encoding="utf-8", errors="replace") if self.error_log.exists() else ""
        output = self.process.tail() if self.process else ""
        return f"--- nginx (port {self.port}) output:\n{output}\n--- nginx error.log (tail):\n" + "\n".join(text.splitlines()[-40:])

    def stop(self) -> None:
        if self.process is None:
            return
        workers = self.workers or _children_of(self.process.pid)
        self.process.stop(signal.SIGTERM)  # fast shutdown: the master ends its workers, then exits
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_pid_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in workers:
            if _pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# --------------------------------------------------------------------------------------------------------------
# Where requests go, and what one test starts


@dataclass
class Endpoint:
    """Where a client sends its requests: a node directly, or nginx in front of the nodes."""

    name: str
    base_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT)


class OperationsCluster(Cluster):
    """Redis, Tandem nodes and nginx for one test; `close()` stops all of them by PID, front to back."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.proxies: list[Nginx] = []

    def node(self, name: str, redis: RedisServer | None = None, ttl_seconds: int = 120, **extra_env: str) -> Node:
        """A node on the Redis broker when `redis` is given, else on the in-memory broker."""
        settings = {
            "BROKER": "redis" if redis is not None else "memory",
            "SESSION_TTL_SECONDS": str(ttl_seconds),
            "HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "LOG_LEVEL": "info",
        }
        if redis is not None:
            settings["REDIS_URL"] = redis.url
        settings.update(extra_env)
        return self.tandem(name, settings, unset=("LOG_FORMAT", "TANDEM_CONFIG"))

    def nginx(self, nodes: list[Node]) -> Nginx:
        directory = self.directory / f"nginx-{len(self.proxies)}"
        directory.mkdir()
        proxy = Nginx(directory, [node.port for node in nodes])
        self.proxies.append(proxy)
        proxy.start()
        return proxy

    def close(self) -> None:
        for proxy in self.proxies:
            try:
                proxy.stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                pass
        super().close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[OperationsCluster]:
    with OperationsCluster(tmp_path) as running:
        yield running


# --------------------------------------------------------------------------------------------------------------
# Metrics


Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(node: Node) -> tuple[str, dict[Sample, float]]:
    """GET /metrics, parsed by prometheus_client's parser: {(sample name, labels): value}."""
    with node.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200, f"GET /metrics: {response.status_code} {response.text}\n{node.log()}"
    assert response.headers.get("content-type", "").startswith("text/plain"), response.headers
    text = response.text
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"sample {key} appears twice in /metrics:\n{text}"
            samples[key] = sample.value
    return text, samples


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    """The sample's value; 0 when it is absent (a counter that never moved may not be exported yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: dict[Sample, float], name: str, ignore: Callable[[dict[str, str]], bool] = lambda labels: False) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name and not ignore(dict(labels))}


def delta(after: dict[Sample, float], before: dict[Sample, float], name: str,
          ignore: Callable[[dict[str, str]], bool] = lambda labels: False) -> dict[frozenset[tuple[str, str]], float]:
    """How much each series of `name` moved between two scrapes; series that did not move are left out."""
    now, then = series(after, name, ignore), series(before, name, ignore)
    moved = {labels: now.get(labels, 0.0) - then.get(labels, 0.0) for labels in set(now) | set(then)}
    return {labels: d for labels, d in moved.items() if d != 0}


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def http_requests_sum(node: Node) -> float:
    _, samples = scrape(node)
    return sum(series(samples, "http_requests_total", ignore=lambda l: l.get("route") == "/metrics").values())


# --------------------------------------------------------------------------------------------------------------
# 1. Behind nginx


def test_flow_through_nginx_is_unbuffered_and_round_robin(cluster: OperationsCluster) -> None:
    redis = cluster.redis()
    a = cluster.node("A", redis)
    b = cluster.node("B", redis)
    proxy = cluster.nginx([a, b])
    front = Endpoint("nginx", proxy.base_url)

    def logs() -> str:
        return f"{a.log()}\n{b.log()}\n{proxy.log()}"

    before = {node.name: http_requests_sum(node) for node in (a, b)}
    assert before == {"A": 0.0, "B": 0.0}, f"fresh nodes already count requests: {before}"

    session_id = new_session_id("nginx")
    stream = Stream(front, session_id).start()
    stream.wait_opened()
    assert stream.response_headers is not None
    assert stream.response_headers.get("content-type", "").startswith("text/event-stream"), stream.response_headers
    assert stream.reader_cookie() is not None, f"no reader-key cookie through nginx: {stream.set_cookies!r}"

    # Heartbeats (every second) come through one by one while the stream stays open.
    assert stream.wait_until(lambda: len([c for c in stream.comments if c[0] == "heartbeat"]) >= 2, HEARTBEAT_SECONDS * 2 + 3.0), (
        f"fewer than two heartbeats through nginx in {HEARTBEAT_SECONDS * 2 + 3.0}s: {stream.describe()}\n"
        f"error {stream.error!r}\n{logs()}"
    )
    assert not stream.ended.is_set(), f"the stream through nginx ended: {stream.error!r}\n{stream.describe()}"
    beats = stream.heartbeats()
    gaps = [later - earlier for earlier, later in zip(beats, beats[1:])]
    assert all(gap >= HEARTBEAT_SECONDS * 0.5 for gap in gaps), (
        f"heartbeats arrived through nginx in a burst (gaps {gaps}), as if buffered"
    )

    # The phone's requests, through nginx: each event arrives on the stream (through nginx) right away.
    latencies: dict[str, float] = {}
    with front.client() as client:
        steps: list[tuple[str, str, Callable[[], httpx.Response]]] = [
            ("connected", "1", lambda: validate(client, session_id)),
            ("input-started", "2", lambda: input_started(client, session_id)),
            ("complete", "3", lambda: submit(client, session_id)),
        ]
        for name, event_id, send in steps:
            sent = time.monotonic()
            response = send()
            body = expect_ok(response, f"{response.request.method} {response.request.url.path} via nginx", logs)
            assert body.get("success", body.get("valid")) is True, body
            event = stream.wait_for_id(event_id)
            assert event is not None, f"`{name}` never reached the stream through nginx: {stream.describe()}\n{logs()}"
            assert event.name == name, event
            latencies[name] = event.received_at - sent
    assert all(latency < PROXIED_EVENT_LATENCY for latency in latencies.values()), (
        f"events took too long from request to arrival through nginx (limit {PROXIED_EVENT_LATENCY}s): "
        f"{ {k: round(v, 3) for k, v in latencies.items()} } - is the proxy buffering?"
    )
    assert flow_events(stream.snapshot()) == full_flow(), stream.describe()

    # Still open a heartbeat later.
    count = len(stream.heartbeats())
    assert stream.wait_until(lambda: len([c for c in stream.comments if c[0] == "heartbeat"]) > count, HEARTBEAT_SECONDS + 3.0), (
        f"no heartbeat through nginx after the flow: {stream.describe()}\nerror {stream.error!r}"
    )
    assert not stream.ended.is_set(), f"the stream through nginx ended: {stream.error!r}\n{stream.describe()}"

    # Round robin without stickiness spread the stream and the phone's requests over both nodes.
    spread = {node.name: http_requests_sum(node) for node in (a, b)}
    assert spread["A"] > 0 and spread["B"] > 0, f"nginx sent every request to one node: requests per node {spread}"
    assert spread["A"] + spread["B"] == 4, f"4 requests went through nginx, the nodes counted {spread}"

    stream.close()
    assert stream.error is None, repr(stream.error)

    # nginx's access log holds paths, never query strings: no session ID, no reader key (the sample's log_format).
    reader_key = "zzreaderkey" + secrets.token_hex(8)
    with front.client() as client:
        client.get("/api/validate-session", params={"session": session_id, "key": reader_key})
        client.get("/phone.html", params={"session": session_id})
    assert poll(lambda: proxy.access_log.exists() and "/phone.html" in proxy.access_log.read_text(encoding="utf-8"), 5.0, 0.1), (
        f"nginx wrote no access log at {proxy.access_log}\n{proxy.log()}"
    )
    access = proxy.access_log.read_text(encoding="utf-8")
    assert "/api/events" in access and "/api/submit" in access, access
    for leak in ("session=", "key=", session_id, reader_key, "?"):
        assert leak not in access, f"{leak!r} is in nginx's access log:\n{access}"

    # The nodes were not told to trust nginx (TRUSTED_PROXIES): each warned once, naming the setting, that the
    # X-Forwarded-For it got was ignored.
    for node in (a, b):
        warnings = node.process.matching("not a trusted proxy")
        assert len(warnings) == 1, f"node {node.name} warned {len(warnings)} times about X-Forwarded-For:\n{node.log()}"
        assert "TRUSTED_PROXIES" in warnings[0] and "127.0.0.1" in warnings[0], warnings[0]
    print(f"\n[nginx] latencies { {k: round(v * 1000, 1) for k, v in latencies.items()} } ms; heartbeat gaps "
          f"{[round(g, 2) for g in gaps]} s; requests per node {spread}")


# --------------------------------------------------------------------------------------------------------------
# 2. Metrics


def _metrics_flow(node: Node, session_id: str, unknown_id: str) -> Stream:
    """Opens a stream, runs the flow and asks for an unknown session; returns the still open stream."""
    stream = Stream(node, session_id).start()
    stream.wait_opened()
    with node.client() as client:
        expect_valid(client, session_id, node.log)
        assert stream.wait_for_id("1") is not None, stream.describe()
        expect_input_started(client, session_id, node.log)
        assert stream.wait_for_id("2") is not None, stream.describe()
        expect_submitted(client, session_id, context=node.log)
        assert stream.wait_for_id("3") is not None, stream.describe()
        missing = validate(client, unknown_id)
        assert missing.status_code == 404, f"validate-session of an unknown session: {missing.status_code} {missing.text}"
    assert flow_events(stream.snapshot()) == full_flow(), stream.describe()
    return stream


def _not_metrics(labels: dict[str, str]) -> bool:
    return labels.get("route") == "/metrics"


def test_metrics_count_a_flow_and_accumulate(cluster: OperationsCluster) -> None:
    node = cluster.node("M")
    _, baseline = scrape(node)
    assert value(baseline, "tandem_open_streams") == 0

    expected_requests = {
        labels(route="/api/events", method="GET", status="200"): 1.0,
        labels(route="/api/validate-session", method="GET", status="200"): 1.0,
        labels(route="/api/input-started", method="POST", status="200"): 1.0,
        labels(route="/api/submit", method="POST", status="200"): 1.0,
        labels(route="/api/validate-session", method="GET", status="404"): 1.0,
    }
    per_type = {labels(type=t): 1.0 for t in ("connected", "input-started", "complete")}

    def check(after: dict[Sample, float], times: int, text: str) -> None:
        scaled = lambda d: {k: v * times for k, v in d.items()}  # noqa: E731
        assert delta(after, baseline, "http_requests_total", _not_metrics) == scaled(expected_requests), text
        durations = delta(after, baseline, "http_request_duration_seconds_count", _not_metrics)
        assert durations == {
            labels(route="/api/events", method="GET"): 1.0 * times,
            labels(route="/api/validate-session", method="GET"): 2.0 * times,
            labels(route="/api/input-started", method="POST"): 1.0 * times,
            labels(route="/api/submit", method="POST"): 1.0 * times,
        }, text
        assert delta(after, baseline, "tandem_events_published_total") == scaled(per_type), text
        assert delta(after, baseline, "tandem_events_delivered_total") == scaled(per_type), text
        assert delta(after, baseline, "tandem_event_delivery_seconds_count") == {frozenset(): 3.0 * times}, text
        assert delta(after, baseline, "tandem_requests_refused_total") == {labels(status="404"): 1.0 * times}, text
        assert delta(after, baseline, "tandem_sessions_opened_total") == {frozenset(): 1.0 * times}, text
        # Every live delivery took well under a second on one node.
        assert value(after, "tandem_event_delivery_seconds_bucket", le="1.0") == 3.0 * times, text
        assert 0 <= value(after, "tandem_event_delivery_seconds_sum") < 3.0 * times, text

    for times in (1, 2):
        stream = _metrics_flow(node, new_session_id("metrics"), new_session_id("unknown"))
        text, open_now = scrape(node)
        assert value(open_now, "tandem_open_streams") == 1, f"one stream open, the gauge says:\n{text}"
        stream.close()
        assert stream.error is None, repr(stream.error)
        assert poll(lambda: value(scrape(node)[1], "tandem_open_streams") == 0, STREAM_GONE_WAIT, 0.2), (
            f"tandem_open_streams not back to 0 within {STREAM_GONE_WAIT}s of the stream closing:\n{scrape(node)[0]}\n{node.log()}"
        )
        text, after = scrape(node)
        check(after, times, f"after {times} flow(s):\n{text}")


# --------------------------------------------------------------------------------------------------------------
# 3. Logs


SECRET_NAME = "ZZname秘密"
SECRET_PHONE = "0999-7777-1234"
REQUEST_LINE = re.compile(r"^(GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH) (\S+) (\d{3})$")


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def _check_json_logs(lines: list[str], secrets_: dict[str, str]) -> list[dict[str, Any]]:
    """Every line is a JSON object with time, level and message; no secret appears in any line, raw or decoded."""
    records = []
    assert lines, "the node wrote no log lines"
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError as error:
            raise AssertionError(f"log line {number} is not JSON ({error}): {line!r}") from None
        assert isinstance(record, dict), f"log line {number} is not a JSON object: {line!r}"
        assert isinstance(record.get("time"), (int, float)), f"log line {number}: no numeric time: {line!r}"
        assert isinstance(record.get("level"), str) and record["level"], f"log line {number}: no level: {line!r}"
        assert isinstance(record.get("message"), str), f"log line {number}: no message: {line!r}"
        decoded = "\n".join(_strings_in(record))
        for what, secret in secrets_.items():
            assert secret not in line and secret not in decoded, f"the {what} ({secret!r}) is in log line {number}: {line!r}"
        records.append(record)
    return records


@pytest.mark.parametrize("broker", ["memory", "redis"])
def test_logs_are_json_and_hold_no_submitted_data(cluster: OperationsCluster, broker: str) -> None:
    redis = cluster.redis() if broker == "redis" else None
    node = cluster.node("L", redis, LOG_FORMAT="json", LOG_LEVEL="trace")
    session_id = new_session_id("logsecret") + secrets.token_hex(8)
    sent: list[tuple[str, str, int]] = []  # (method, path, status) of every request made, the stream's included

    stream = Stream(node, session_id).start()
    stream.wait_opened()
    sent.append(("GET", "/api/events", 200))
    cookie = stream.reader_cookie()
    assert cookie is not None, stream.set_cookies
    reader_key = cookie.split("=", 1)[1]

    with node.client() as client:
        def record(response: httpx.Response, status: int) -> httpx.Response:
            assert response.status_code == status, (
                f"{response.request.method} {response.request.url.path}: expected {status}, got {response.status_code} "
                f"{response.text}\n{node.log()}"
            )
            sent.append((response.request.method, response.request.url.path, status))
            return response

        record(validate(client, session_id), 200)
        record(input_started(client, session_id), 200)
        # Refused submissions that carry the data: a control character, a value too long, a body that is not JSON.
        record(submit(client, session_id, SECRET_NAME + "\u0007", SECRET_PHONE), 400)
        record(submit(client, session_id, SECRET_NAME, SECRET_PHONE * 3), 400)
        record(client.post("/api/submit", content=f'{{"sessionId":"{session_id}","name":"{SECRET_NAME}","phone":"{SECRET_PHONE}"',
                           headers={"Content-Type": "application/json"}), 400)
        # A form-encoded body (what another site's page can post without a preflight) is refused as not JSON.
        record(client.post("/api/submit", data={"sessionId": session_id, "name": SECRET_NAME, "phone": SECRET_PHONE}), 415)
        # The real one; the same again (a retry) succeeds; a different second one is refused as already submitted.
        record(submit(client, session_id, SECRET_NAME, SECRET_PHONE), 200)
        record(submit(client, session_id, SECRET_NAME, SECRET_PHONE), 200)
        record(submit(client, session_id, SECRET_NAME, SECRET_PHONE[:-1]), 409)
        # A completed session no longer validates: a second phone learns it before typing.
        record(validate(client, session_id), 409)
        # A second reader without the key is refused.
        record(client.get("/api/events", params={"session": session_id}), 403)

    complete = stream.wait_for_id("3")
    assert complete is not None and complete.json() == {"name": SECRET_NAME, "phone": SECRET_PHONE}, stream.describe()

    # SIGTERM: the node drains (ending the stream) and exits; then every line it wrote is read.
    node.process.stop(signal.SIGTERM)
    assert node.process.process.returncode == 0, f"the node exited with {node.process.process.returncode}\n{node.log()}"
    assert node.process.wait_output_closed(), "the node's output did not close after it exited"
    assert stream.ended.wait(EVENT_WAIT), "the stream did not end when the node drained"
    lines = node.process.stderr()

    records = _check_json_logs(lines, {
        "submitted name": SECRET_NAME,
        "submitted phone": SECRET_PHONE,
        "session ID": session_id,
        "reader key": reader_key,
    })
    # Standard output (the PC page's URL and QR code, not logs) holds none of it either.
    stdout = node.process.stdout()
    for secret in (SECRET_NAME, SECRET_PHONE, session_id, reader_key):
        assert not any(secret in line for line in stdout), f"{secret!r} is on standard output:\n" + "\n".join(stdout)
    # Parts of the name are not there either (e.g. one half of it, escaped or not).
    for part in ("ZZname", "秘密", "\\u79d8\\u5bc6", "7777-1234"):
        assert not any(part in line for line in lines), f"{part!r} is in the logs:\n" + "\n".join(l for l in lines if part in l)

    # One line per request, with its request id, its method, path (no query) and status.
    request_lines = [r for r in records if REQUEST_LINE.match(r["message"])]
    for entry in request_lines:
        assert entry.get("request.id"), f"request line without request.id: {entry}"
        assert "duration_ms" in entry, f"request line without duration_ms: {entry}"
        assert "?" not in entry["message"], f"request line with a query string: {entry}"
    logged = Counter(
        (m.group(1), m.group(2), int(m.group(3))) for m in (REQUEST_LINE.match(r["message"]) for r in request_lines)
    )
    assert logged == Counter(sent), (
        f"request lines do not match the requests made:\n made:   {sorted(Counter(sent).items())}\n"
        f" logged: {sorted(logged.items())}\n" + "\n".join(lines)
    )
    ids = [r["request.id"] for r in request_lines]
    assert len(set(ids)) == len(ids), f"request ids repeat: {ids}"
    levels = Counter(r["level"] for r in records)
    print(f"\n[logs/{broker}] {len(lines)} lines, levels {dict(levels)}, {len(request_lines)} request lines")


@pytest.mark.parametrize("broker", ["memory", "redis"])
def test_logs_of_a_stream_its_reader_closes(cluster: OperationsCluster, broker: str) -> None:
    """The PC closes its stream (the article's page closes EventSource on `complete`), at trace level: the stream's
    request still gets its line with a request id, and the session ID appears nowhere."""
    redis = cluster.redis() if broker == "redis" else None
    node = cluster.node("L", redis, LOG_FORMAT="json", LOG_LEVEL="trace")
    session_id = new_session_id("logclosed") + secrets.token_hex(8)

    stream = Stream(node, session_id).start()
    stream.wait_opened()
    with node.client() as client:
        expect_valid(client, session_id, node.log)
        expect_input_started(client, session_id, node.log)
        expect_submitted(client, session_id, SECRET_NAME, SECRET_PHONE, node.log)
    assert stream.wait_for_id("3") is not None, stream.describe()
    stream.close()
    # The node notices the dropped connection at its next heartbeat write; give it a few.
    time.sleep(HEARTBEAT_SECONDS * 3 + 0.5)

    node.process.stop(signal.SIGTERM)
    assert node.process.process.returncode == 0, f"the node exited with {node.process.process.returncode}\n{node.log()}"
    assert node.process.wait_output_closed()
    lines = node.process.stderr()
    records = _check_json_logs(lines, {"submitted name": SECRET_NAME, "submitted phone": SECRET_PHONE, "session ID": session_id})
    messages = [r["message"] for r in records if r.get("request.id")]
    assert any(REQUEST_LINE.match(m) and m.startswith("GET /api/events ") for m in messages), (
        "no request line for the stream its reader closed (README: one line per request):\n" + "\n".join(lines)
    )


def test_the_nginx_sample_treats_both_event_streams_as_streams() -> None:
    """Both SSE paths (the PC's `/api/events`, the phone's `/api/phone/events`) reach a `location` of the sample with
    buffering off and a read timeout far past the heartbeat; under `location /` (30 s) nginx would cut the phone's
    channel at its first quiet heartbeat interval. Static: nginx's regex locations win over the `/` prefix."""
    sample = NGINX_SAMPLE.read_text()
    blocks = re.findall(r"location\s+(=|~)?\s*(\S+)\s*\{(.*?)\n    \}", sample, re.S)
    assert blocks, f"no location blocks found in {NGINX_SAMPLE}"
    for path in ("/api/events", "/api/phone/events"):
        chosen = [
            body
            for kind, pattern, body in blocks
            if (kind == "=" and pattern == path) or (kind == "~" and re.search(pattern, path))
        ]
        assert chosen, f"{path} falls into `location /` of {NGINX_SAMPLE}"
        body = chosen[0]
        timeout = re.search(r"proxy_read_timeout\s+(\d+)s;", body)
        assert timeout and int(timeout.group(1)) >= 3600, f"{path}: read timeout {timeout and timeout.group(1)}"
        assert re.search(r"proxy_buffering\s+off;", body), f"{path}: buffered"
