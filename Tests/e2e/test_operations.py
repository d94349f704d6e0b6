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

This file is independent of test_multinode.py: the helpers it shares with it are copied, not imported.
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
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / ".build" / "debug" / "tandem"
NGINX_SAMPLE = REPO_ROOT / "deploy" / "nginx.conf"

HEARTBEAT_SECONDS = 1
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

REQUEST_TIMEOUT = httpx.Timeout(5.0)
# A stream's read timeout only has to outlast the heartbeat period.
STREAM_TIMEOUT = httpx.Timeout(connect=5.0, read=HEARTBEAT_SECONDS + 4.0, write=5.0, pool=5.0)
# How long one event may take to reach a stream once its cause has been answered (generous: the tests that measure
# latency assert their own, much tighter bound on the recorded arrival times).
EVENT_WAIT = 5.0
# From sending a request to its event arriving on the stream through nginx.
PROXIED_EVENT_LATENCY = 0.5
# How long a node may take to notice that a stream's client went away (it writes a heartbeat every second).
STREAM_GONE_WAIT = HEARTBEAT_SECONDS * 3 + 3.0

NAME = "山田太郎"
PHONE = "090-1234-5678"


# --------------------------------------------------------------------------------------------------------------
# Processes


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoggedProcess:
    """A child process whose stdout and stderr lines are collected by daemon threads, so no pipe fills up. `lines`
    holds both in arrival order; `stderr_lines` only standard error (where Tandem's logs go)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.args = args
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.pid = self.process.pid
        self.lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.stdout_lines: list[str] = []
        self.drained = threading.Event()
        self._open_pipes = 2
        self._changed = threading.Condition()
        for pipe, own in ((self.process.stdout, self.stdout_lines), (self.process.stderr, self.stderr_lines)):
            threading.Thread(target=self._drain, args=(pipe, own), name=f"log-{self.pid}", daemon=True).start()

    def _drain(self, pipe: Any, own: list[str]) -> None:
        for line in pipe:
            with self._changed:
                self.lines.append(line)
                own.append(line)
                self._changed.notify_all()
        with self._changed:
            self._open_pipes -= 1
            if self._open_pipes == 0:
                self.drained.set()
            self._changed.notify_all()

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_for_line(self, text: str, timeout: float, start: int = 0) -> bool:
        """Whether a line containing `text` (at index >= start) appears within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if any(text in line for line in self.lines[start:]):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.drained.is_set():  # drained: the process closed its output
                    return any(text in line for line in self.lines[start:])
                self._changed.wait(min(remaining, 0.2))

    def stdout(self) -> list[str]:
        with self._changed:
            return [line.rstrip("\n") for line in self.stdout_lines]

    def stderr(self) -> list[str]:
        with self._changed:
            return [line.rstrip("\n") for line in self.stderr_lines]

    def tail(self, n: int = 60) -> str:
        with self._changed:
            return "".join(self.lines[-n:])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signals the process by its PID and waits (bounded) until it has exited; SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)

    def wait_output_closed(self, timeout: float = STOP_TIMEOUT) -> bool:
        """After the process exited: whether the reader thread has taken every line of its output."""
        return self.drained.wait(timeout)


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
# Redis


class RedisError(Exception):
    pass


def redis_command(port: int, *args: str | int, timeout: float = 3.0) -> Any:
    """Sends one command over a fresh connection and returns the parsed RESP2 reply."""
    payload = bytearray(f"*{len(args)}\r\n".encode())
    for arg in args:
        data = str(arg).encode()
        payload += f"${len(data)}\r\n".encode() + data + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(payload)
        with sock.makefile("rb") as reader:
            return _read_reply(reader)


def _read_reply(reader: Any) -> Any:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"Redis closed the connection mid-reply: {line!r}")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)
        return data[:-2].decode("utf-8", errors="replace")
    if kind == b"*":
        size = int(rest)
        if size < 0:
            return None
        return [_read_reply(reader) for _ in range(size)]
    raise RedisError(f"unexpected reply line {line!r}")


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.process: LoggedProcess | None = None
        self.url = ""

    def start(self) -> None:
        """Starts on a free port (retrying if another process takes it first)."""
        for _ in range(3):
            self.port = _free_loopback_port()
            args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", str(self.directory)]
            self.process = LoggedProcess(args, cwd=self.directory)
            if self._wait_ready(STARTUP_TIMEOUT):
                self.url = f"redis://127.0.0.1:{self.port}/0"
                return
            self.process.stop(signal.SIGKILL)
        raise RuntimeError(f"redis-server did not start on port {self.port}; its log:\n{self.process.tail() if self.process else ''}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.running():
                return False
            try:
                if redis_command(self.port, "PING", timeout=1.0) == "PONG":
                    return True
            except (OSError, RedisError):
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGTERM)


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


def nginx_site_config(sample: str, node_ports: list[int], listen_port: int) -> str:
    """`deploy/nginx.conf` with its upstream's server lines pointed at `node_ports` (the parameters of its first
    server line kept) and its `listen 80` moved to a loopback port. Fails when the sample no longer has that shape."""
    server_line = re.compile(r"^(\s*)server\s+\S+?(\s.*)?;\s*(#.*)?$")
    out: list[str] = []
    in_upstream = replaced = False
    servers = listens = 0
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
        out.append(line)
    assert servers >= 1, f"no `server` line in an upstream block of {NGINX_SAMPLE}"
    assert listens == 1, f"expected exactly one `listen 80;` in {NGINX_SAMPLE}, found {listens}"
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

    def _write_config(self) -> Path:
        site = self.directory / "tandem-site.conf"
        site.write_text(nginx_site_config(NGINX_SAMPLE.read_text(encoding="utf-8"), self.node_ports, self.port), encoding="utf-8")
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
            self.port = _free_loopback_port()
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
        while time.monotonic() < deadline:
            if not self.process.running():
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            # Listening; remember the workers so that they can be checked when the master stops.
            while time.monotonic() < deadline and not self.workers:
                self.workers = _children_of(self.process.pid)
                if not self.workers:
                    time.sleep(0.05)
            return bool(self.workers)
        return False

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
# Tandem nodes


@dataclass
class Node:
    name: str
    port: int
    process: LoggedProcess

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT)

    def log(self) -> str:
        return f"--- node {self.name} (port {self.port}, pid {self.process.pid}) log:\n{self.process.tail()}"


@dataclass
class Endpoint:
    """Where a client sends its requests: a node directly, or nginx in front of the nodes."""

    name: str
    base_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT)


def _binary() -> str:
    binary = os.environ.get("TANDEM_BINARY", str(DEFAULT_BINARY))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"Tandem binary not found or not executable: {binary} (run `swift build --product tandem`)")
    return binary


class Cluster:
    """Starts Redis, Tandem nodes and nginx for one test; `close()` stops all of them by PID, front to back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[LoggedProcess] = []
        self.redis_servers: list[RedisServer] = []
        self.proxies: list[Nginx] = []

    def redis(self) -> RedisServer:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server not found on PATH (Debian: apt-get install redis-server)")
        directory = self.directory / f"redis-{len(self.redis_servers)}"
        directory.mkdir()
        server = RedisServer(directory)
        self.redis_servers.append(server)
        server.start()
        return server

    def node(self, name: str, redis: RedisServer | None = None, ttl_seconds: int = 120, **extra_env: str) -> Node:
        """A node on the Redis broker when `redis` is given, else on the in-memory broker."""
        binary = _binary()
        env = dict(os.environ)
        for key in ("LOG_FORMAT", "TANDEM_CONFIG"):
            env.pop(key, None)
        env.update(
            HOST="127.0.0.1",
            BROKER="redis" if redis is not None else "memory",
            SESSION_TTL_SECONDS=str(ttl_seconds),
            HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
            LOG_LEVEL="info",
        )
        if redis is not None:
            env["REDIS_URL"] = redis.url
        env.update(extra_env)
        for _ in range(3):  # another process may take the free port between our probe and the node's bind
            port = _free_loopback_port()
            env["PORT"] = str(port)
            process = LoggedProcess([binary], env=env, cwd=REPO_ROOT)
            self.processes.append(process)
            if process.wait_for_line(f"Tandem listening on 127.0.0.1:{port}", STARTUP_TIMEOUT):
                node = Node(name, port, process)
                if redis is not None:
                    assert process.wait_for_line("connected to Redis", STARTUP_TIMEOUT), (
                        f"node {name} never logged 'connected to Redis'\n{node.log()}"
                    )
                return node
            process.stop()
        pytest.fail(f"node {name} did not report 'Tandem listening on ...' in time; its log:\n{process.tail()}")

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
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception:  # noqa: BLE001
                pass
        for server in self.redis_servers:
            try:
                server.stop()
            except Exception:  # noqa: BLE001
                pass


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        yield running
    finally:
        running.close()


# --------------------------------------------------------------------------------------------------------------
# SSE streams read in background threads


@dataclass
class Event:
    name: str
    id: str | None
    data: str
    received_at: float = field(default=0.0, compare=False)  # time.monotonic() when its blank line arrived

    def json(self) -> Any:
        return json.loads(self.data)

    def simple(self) -> tuple[str, str | None, Any]:
        return (self.name, self.id, self.json())


class Stream:
    """Reads GET /api/events in a daemon thread with a small WHATWG-style parser; records events, comments and
    `retry` fields, each with its arrival time. The test thread only waits on it with deadlines."""

    def __init__(self, target: Node | Endpoint, session_id: str, cookie: str | None = None) -> None:
        self.target = target
        self.session_id = session_id
        self.headers = {"Accept": "text/event-stream"}
        if cookie is not None:
            self.headers["Cookie"] = cookie
        self.set_cookies: list[str] = []
        self.status: int | None = None
        self.response_headers: httpx.Headers | None = None
        self.body = b""
        self.events: list[Event] = []
        self.comments: list[tuple[str, float]] = []
        self.retries: list[str] = []
        self.lines: list[str] = []
        self.error: BaseException | None = None
        self.closed_by_server = False
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"sse-{target.name}-{session_id}", daemon=True)

    def start(self) -> "Stream":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Drops the connection at the next chunk the server sends (a heartbeat at the latest)."""
        self._stop.set()

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=STREAM_TIMEOUT) as client:
                with client.stream(
                    "GET", f"{self.target.base_url}/api/events", params={"session": self.session_id}, headers=self.headers
                ) as response:
                    with self._changed:
                        self.set_cookies = response.headers.get_list("set-cookie")
                        self.response_headers = response.headers
                        self.status = response.status_code
                        self._changed.notify_all()
                    if response.status_code != 200:
                        self.body = response.read()
                        self.closed_by_server = True
                        return
                    self.closed_by_server = self._read(response)
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            self.error = error
        finally:
            with self._changed:
                self.ended.set()
                self._changed.notify_all()

    def _read(self, response: httpx.Response) -> bool:
        """True when the server ended the stream, False when we stopped reading."""
        buffer = b""
        name, data, last_id = "", [], None  # type: tuple[str, list[str], str | None]
        for chunk in response.iter_raw():
            arrived = time.monotonic()
            buffer += chunk
            while True:
                cut = buffer.find(b"\n")
                if cut < 0:
                    break
                line = buffer[:cut].rstrip(b"\r").decode("utf-8")
                buffer = buffer[cut + 1:]
                with self._changed:
                    self.lines.append(line)
                    if line == "":
                        if data:
                            self.events.append(Event(name or "message", last_id, "\n".join(data), arrived))
                        name, data = "", []
                    elif line.startswith(":"):
                        self.comments.append((line[1:].strip(), arrived))
                    else:
                        key, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if key == "event":
                            name = value
                        elif key == "data":
                            data.append(value)
                        elif key == "id":
                            last_id = value
                        elif key == "retry":
                            self.retries.append(value)
                    self._changed.notify_all()
            if self._stop.is_set():
                return False
        return True

    # Waiting

    def wait_response(self, timeout: float = EVENT_WAIT) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.status is None and not self.ended.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        assert self.status == 200, (
            f"GET /api/events?session={self.session_id} via {self.target.name}: status {self.status}, "
            f"body {self.body!r}, error {self.error!r}"
        )

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Waits (bounded) until `predicate()`, evaluated under the stream's lock, holds or the stream ends."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if predicate():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.ended.is_set():
                    return predicate()
                self._changed.wait(remaining)

    def wait_for_id(self, event_id: str, timeout: float = EVENT_WAIT) -> Event | None:
        def found() -> Event | None:
            return next((e for e in self.events if e.id == event_id and e.name != "message"), None)

        self.wait_until(lambda: found() is not None, timeout)
        with self._changed:
            return found()

    def wait_opened(self) -> None:
        """Waits for the 200 and the session-info event (sent once the node has subscribed to the session)."""
        self.wait_response()
        assert self.wait_until(lambda: any(is_session_info(e) for e in self.events), EVENT_WAIT), (
            f"no session-info on {self.session_id} via {self.target.name}: {self.snapshot()!r}, error {self.error!r}"
        )

    def heartbeats(self) -> list[float]:
        with self._changed:
            return [at for text, at in self.comments if text == "heartbeat"]

    def reader_cookie(self) -> str | None:
        """`name=value` of the reader-key cookie the server set when this stream opened the session, if any."""
        for header in self.set_cookies:
            pair = header.split(";", 1)[0].strip()
            if pair.startswith(f"tandem_reader_{self.session_id}="):
                return pair
        return None

    def close(self) -> None:
        """Stops reading and waits (bounded) until the connection is dropped."""
        self.stop()
        assert self.ended.wait(HEARTBEAT_SECONDS + 3.0), f"could not drop stream {self.session_id} via {self.target.name}"

    def snapshot(self) -> list[Event]:
        with self._changed:
            return list(self.events)

    def describe(self) -> str:
        with self._changed:
            return "\n".join(self.lines[-40:])


def is_session_info(event: Event) -> bool:
    try:
        return event.name == "message" and event.json().get("type") == "session-info"
    except ValueError:
        return False


def flow_events(events: list[Event]) -> list[tuple[str, str | None, Any]]:
    return [e.simple() for e in events if not is_session_info(e)]


def full_flow(name: str = NAME, phone: str = PHONE) -> list[tuple[str, str, Any]]:
    return [("connected", "1", {}), ("input-started", "2", {}), ("complete", "3", {"name": name, "phone": phone})]


# --------------------------------------------------------------------------------------------------------------
# Requests


def new_session_id(prefix: str = "op") -> str:
    return f"{prefix}_" + secrets.token_hex(8)


def validate(client: httpx.Client, session_id: str) -> httpx.Response:
    return client.get("/api/validate-session", params={"session": session_id})


def input_started(client: httpx.Client, session_id: str) -> httpx.Response:
    return client.post("/api/input-started", json={"sessionId": session_id})


def submit(client: httpx.Client, session_id: str, name: str = NAME, phone: str = PHONE) -> httpx.Response:
    return client.post("/api/submit", json={"sessionId": session_id, "name": name, "phone": phone})


def expect_ok(response: httpx.Response, what: str, context: Callable[[], str] = lambda: "") -> dict[str, Any]:
    assert response.status_code == 200, f"{what}: {response.status_code} {response.text}\n{context()}"
    return response.json()


def poll(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


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


def test_flow_through_nginx_is_unbuffered_and_round_robin(cluster: Cluster) -> None:
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
    print(f"\n[nginx] latencies { {k: round(v * 1000, 1) for k, v in latencies.items()} } ms; heartbeat gaps "
          f"{[round(g, 2) for g in gaps]} s; requests per node {spread}")


# --------------------------------------------------------------------------------------------------------------
# 2. Metrics


def _metrics_flow(node: Node, session_id: str, unknown_id: str) -> Stream:
    """Opens a stream, runs the flow and asks for an unknown session; returns the still open stream."""
    stream = Stream(node, session_id).start()
    stream.wait_opened()
    with node.client() as client:
        assert expect_ok(validate(client, session_id), "validate-session", node.log)["valid"] is True
        assert stream.wait_for_id("1") is not None, stream.describe()
        assert expect_ok(input_started(client, session_id), "input-started", node.log) == {"success": True}
        assert stream.wait_for_id("2") is not None, stream.describe()
        assert expect_ok(submit(client, session_id), "submit", node.log)["success"] is True
        assert stream.wait_for_id("3") is not None, stream.describe()
        missing = validate(client, unknown_id)
        assert missing.status_code == 404, f"validate-session of an unknown session: {missing.status_code} {missing.text}"
    assert flow_events(stream.snapshot()) == full_flow(), stream.describe()
    return stream


def _not_metrics(labels: dict[str, str]) -> bool:
    return labels.get("route") == "/metrics"


def test_metrics_count_a_flow_and_accumulate(cluster: Cluster) -> None:
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
def test_logs_are_json_and_hold_no_submitted_data(cluster: Cluster, broker: str) -> None:
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
        # The real one, as JSON; then a second one as a form, refused as already submitted.
        record(submit(client, session_id, SECRET_NAME, SECRET_PHONE), 200)
        record(client.post("/api/submit", data={"sessionId": session_id, "name": SECRET_NAME, "phone": SECRET_PHONE}), 409)
        record(validate(client, session_id), 200)
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
def test_logs_of_a_stream_its_reader_closes(cluster: Cluster, broker: str) -> None:
    """The PC closes its stream (the article's page closes EventSource on `complete`), at trace level: the stream's
    request still gets its line with a request id, and the session ID appears nowhere."""
    redis = cluster.redis() if broker == "redis" else None
    node = cluster.node("L", redis, LOG_FORMAT="json", LOG_LEVEL="trace")
    session_id = new_session_id("logclosed") + secrets.token_hex(8)

    stream = Stream(node, session_id).start()
    stream.wait_opened()
    with node.client() as client:
        assert expect_ok(validate(client, session_id), "validate-session", node.log)["valid"] is True
        assert expect_ok(input_started(client, session_id), "input-started", node.log) == {"success": True}
        assert expect_ok(submit(client, session_id, SECRET_NAME, SECRET_PHONE), "submit", node.log)["success"] is True
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
