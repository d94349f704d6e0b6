"""End-to-end checks of Tandem with the Redis broker: two nodes sharing one Redis.

Each test starts its own `redis-server` on a free loopback port (in a temporary directory) and its own two Tandem
nodes pointed at it, then checks what crosses nodes: events published on node B reach a stream held on node A,
sessions and their expiry are shared, each node subscribes only to the channels of the streams it holds, a Redis
outage is answered with 503 and survived, and a stream resumes on the other node with `Last-Event-ID`.

Needs: pip install -r Tests/e2e/requirements.txt, `redis-server` on PATH (Debian: redis-server), and a built binary
(`swift build --product tandem`), found at $TANDEM_BINARY or .build/debug/tandem.
Run: python3 -m pytest -q Tests/e2e/test_multinode.py

Every wait is bounded: HTTP and Redis sockets have timeouts, processes are waited on with deadlines, and the threads
that read streams are daemons the tests only wait on with a deadline. Every process a test starts is stopped by its
PID when the test ends, passed or failed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / ".build" / "debug" / "tandem"

HEARTBEAT_SECONDS = 1
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

REQUEST_TIMEOUT = httpx.Timeout(5.0)
# A stream's read timeout only has to outlast the heartbeat period.
STREAM_TIMEOUT = httpx.Timeout(connect=5.0, read=HEARTBEAT_SECONDS + 4.0, write=5.0, pool=5.0)
# How long one event may take to reach a stream once its cause has been answered.
EVENT_WAIT = 5.0
# How long a node may take to notice that a stream's client went away and unsubscribe.
UNSUBSCRIBE_WAIT = 5.0
# Recovery after Redis comes back (backoff tops out at 5 s).
RECOVERY_WAIT = 15.0

NAME = "山田太郎"
PHONE = "090-1234-5678"

UNREACHABLE = "Redis unreachable"
REACHABLE_AGAIN = "Redis reachable again"


# --------------------------------------------------------------------------------------------------------------
# Processes


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoggedProcess:
    """A child process whose stderr (and stdout) lines are collected by a daemon thread, so no pipe fills up."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.args = args
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.pid = self.process.pid
        self.lines: list[str] = []
        self.drained = threading.Event()
        self._changed = threading.Condition()
        threading.Thread(target=self._drain, name=f"log-{self.pid}", daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
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

    def count(self, text: str) -> int:
        with self._changed:
            return sum(text in line for line in self.lines)

    def matching(self, text: str) -> list[str]:
        with self._changed:
            return [line.rstrip("\n") for line in self.lines if text in line]

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
    def __init__(self, directory: Path, persistent: bool) -> None:
        self.directory = directory
        self.persistent = persistent
        self.port = 0
        self.process: LoggedProcess | None = None
        self.url = ""

    def _args(self) -> list[str]:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.directory)]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        return args

    def start(self, port: int | None = None) -> None:
        """Starts on `port`, or on a free port (retrying if another process takes it first)."""
        attempts = 1 if port is not None else 3
        for _ in range(attempts):
            self.port = port if port is not None else _free_loopback_port()
            self.process = LoggedProcess(self._args(), cwd=self.directory)
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
                # Also fails with LOADING while an append-only file is read back after a restart.
                if redis_command(self.port, "PING", timeout=1.0) == "PONG":
                    return True
            except (OSError, RedisError):
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGTERM)

    def command(self, *args: str | int) -> Any:
        return redis_command(self.port, *args)

    # What the tests look at.

    def channels(self) -> set[str]:
        return set(self.command("PUBSUB", "CHANNELS", "tandem:*"))

    def numsub(self, channel: str) -> int:
        reply = self.command("PUBSUB", "NUMSUB", channel)
        return int(reply[1])

    def numpat(self) -> int:
        return int(self.command("PUBSUB", "NUMPAT"))


def channel_of(session_id: str) -> str:
    return f"tandem:{{{session_id}}}:events"


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


def _binary() -> str:
    binary = os.environ.get("TANDEM_BINARY", str(DEFAULT_BINARY))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"Tandem binary not found or not executable: {binary} (run `swift build --product tandem`)")
    return binary


class Cluster:
    """Starts Redis and Tandem nodes for one test; `close()` stops all of them by PID, nodes first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[LoggedProcess] = []
        self.redis_servers: list[RedisServer] = []

    def redis(self, persistent: bool = False) -> RedisServer:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server not found on PATH (Debian: apt-get install redis-server)")
        directory = self.directory / f"redis-{len(self.redis_servers)}"
        directory.mkdir()
        server = RedisServer(directory, persistent)
        self.redis_servers.append(server)
        server.start()
        return server

    def node(self, name: str, redis: RedisServer, ttl_seconds: int) -> Node:
        binary = _binary()
        env = dict(os.environ)
        env.update(
            HOST="127.0.0.1",
            BROKER="redis",
            REDIS_URL=redis.url,
            SESSION_TTL_SECONDS=str(ttl_seconds),
            HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
        )
        for _ in range(3):  # another process may take the free port between our probe and the node's bind
            port = _free_loopback_port()
            env["PORT"] = str(port)
            process = LoggedProcess([binary], env=env, cwd=REPO_ROOT)
            self.processes.append(process)
            if process.wait_for_line(f"Tandem listening on 127.0.0.1:{port}", STARTUP_TIMEOUT):
                node = Node(name, port, process)
                assert process.wait_for_line("connected to Redis", STARTUP_TIMEOUT), (
                    f"node {name} never logged 'connected to Redis'\n{node.log()}"
                )
                return node
            process.stop()
        pytest.fail(f"node {name} did not report 'Tandem listening on ...' in time; its log:\n{process.tail()}")

    def close(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
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

    def json(self) -> Any:
        return json.loads(self.data)

    def simple(self) -> tuple[str, str | None, Any]:
        return (self.name, self.id, self.json())


class Stream:
    """Reads GET /api/events in a daemon thread with a small WHATWG-style parser; records events, comments and
    `retry` fields. The test thread only waits on it with deadlines."""

    def __init__(
        self, node: Node, session_id: str, last_event_id: str | None = None, cookie: str | None = None, key: str | None = None
    ) -> None:
        self.node = node
        self.session_id = session_id
        self.params = {"session": session_id} if key is None else {"session": session_id, "key": key}
        self.headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = last_event_id
        if cookie is not None:
            self.headers["Cookie"] = cookie
        self.set_cookies: list[str] = []
        self.status: int | None = None
        self.body = b""
        self.events: list[Event] = []
        self.comments: list[str] = []
        self.retries: list[str] = []
        self.lines: list[str] = []
        self.error: BaseException | None = None
        self.closed_by_server = False
        self.opened_at: float | None = None
        self.ended_at: float | None = None
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"sse-{node.name}-{session_id}", daemon=True)

    def start(self) -> "Stream":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Drops the connection at the next chunk the server sends (a heartbeat at the latest)."""
        self._stop.set()

    def _run(self) -> None:
        try:
            self.opened_at = time.monotonic()
            with httpx.Client(timeout=STREAM_TIMEOUT) as client:
                with client.stream(
                    "GET", f"{self.node.base_url}/api/events", params=self.params, headers=self.headers
                ) as response:
                    with self._changed:
                        self.set_cookies = response.headers.get_list("set-cookie")
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
            self.ended_at = time.monotonic()
            with self._changed:
                self.ended.set()
                self._changed.notify_all()

    def _read(self, response: httpx.Response) -> bool:
        """True when the server ended the stream, False when we stopped reading."""
        buffer = b""
        name, data, last_id = "", [], None  # type: tuple[str, list[str], str | None]
        for chunk in response.iter_bytes():
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
                            self.events.append(Event(name or "message", last_id, "\n".join(data)))
                        name, data = "", []
                    elif line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    else:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "event":
                            name = value
                        elif field == "data":
                            data.append(value)
                        elif field == "id":
                            last_id = value
                        elif field == "retry":
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
            f"GET /api/events?session={self.session_id} on node {self.node.name}: status {self.status}, "
            f"body {self.body!r}, error {self.error!r}"
        )

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = EVENT_WAIT) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if predicate(self.events):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.ended.is_set():
                    return predicate(self.events)
                self._changed.wait(remaining)

    def wait_for_id(self, event_id: str, timeout: float = EVENT_WAIT) -> bool:
        return self.wait_for(lambda events: any(e.id == event_id and e.name != "message" for e in events), timeout)

    def wait_opened(self) -> None:
        """Waits for the 200 and the session-info event (sent once this node has subscribed to the session)."""
        self.wait_response()
        assert self.wait_for(lambda events: any(is_session_info(e) for e in events)), (
            f"no session-info on {self.session_id}@{self.node.name}: {self.snapshot()!r}, error {self.error!r}"
        )

    def wait_ended(self, timeout: float) -> bool:
        return self.ended.wait(timeout)

    def reader_cookie(self) -> str | None:
        """`name=value` of the reader-key cookie the server set when this stream opened the session, if any.

        Cookies are scoped by host, not port, so a browser sends it to every node behind the same host name: the
        tests send it with later streams of the same session (another tab, a reconnect), on either node.
        """
        for header in self.set_cookies:
            pair = header.split(";", 1)[0].strip()
            if pair.startswith(f"tandem_reader_{self.session_id}="):
                return pair
        return None

    def close(self) -> None:
        """Stops reading and waits (bounded) until the connection is dropped."""
        self.stop()
        assert self.wait_ended(HEARTBEAT_SECONDS + 3.0), f"could not drop stream {self.session_id}@{self.node.name}"

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


# --------------------------------------------------------------------------------------------------------------
# Requests


def new_session_id() -> str:
    return "mn_" + secrets.token_hex(8)


def validate(node: Node, session_id: str) -> httpx.Response:
    with node.client() as client:
        return client.get("/api/validate-session", params={"session": session_id})


def input_started(node: Node, session_id: str) -> httpx.Response:
    with node.client() as client:
        return client.post("/api/input-started", json={"sessionId": session_id})


def submit(node: Node, session_id: str, name: str = NAME, phone: str = PHONE) -> httpx.Response:
    with node.client() as client:
        return client.post("/api/submit", json={"sessionId": session_id, "name": name, "phone": phone})


def health(node: Node) -> httpx.Response:
    with node.client() as client:
        return client.get("/healthz")


def expect_ok(response: httpx.Response, node: Node, what: str) -> dict[str, Any]:
    assert response.status_code == 200, f"{what} on node {node.name}: {response.status_code} {response.text}\n{node.log()}"
    return response.json()


def expect_valid(node: Node, session_id: str) -> None:
    body = expect_ok(validate(node, session_id), node, f"validate-session {session_id}")
    assert body["valid"] is True, body


def expect_flow(node: Node, session_id: str) -> None:
    """validate-session, input-started and submit on `node`, each answered 200 with success."""
    expect_valid(node, session_id)
    body = expect_ok(input_started(node, session_id), node, "input-started")
    assert body == {"success": True}, body
    body = expect_ok(submit(node, session_id), node, "submit")
    assert body["success"] is True, body


def flow_events(events: list[Event]) -> list[tuple[str, str | None, Any]]:
    return [e.simple() for e in events if not is_session_info(e)]


FULL_FLOW = [
    ("connected", "1", {}),
    ("input-started", "2", {}),
    ("complete", "3", {"name": NAME, "phone": PHONE}),
]


def poll(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------------------
# Tests


def test_two_nodes_share_events_sessions_and_expiry(cluster: Cluster) -> None:
    ttl = 3
    redis = cluster.redis()
    a = cluster.node("A", redis, ttl_seconds=ttl)
    b = cluster.node("B", redis, ttl_seconds=ttl)
    session_id = new_session_id()

    stream = Stream(a, session_id).start()
    stream.wait_opened()
    info = stream.snapshot()[0]
    assert is_session_info(info) and info.id == "0", info
    expiry_ms = info.json()["expiryTime"]
    assert abs(expiry_ms - (time.time() * 1000 + ttl * 1000)) < 2000, info
    assert redis.command("EXISTS", f"tandem:{{{session_id}}}:session") == 1

    # The phone side talks to B only.
    expect_valid(b, session_id)
    assert stream.wait_for_id("1"), f"`connected` from B did not reach A: {stream.snapshot()!r}\n{b.log()}\n{a.log()}"
    assert expect_ok(input_started(b, session_id), b, "input-started") == {"success": True}
    assert stream.wait_for_id("2"), f"`input-started` from B did not reach A: {stream.snapshot()!r}"
    assert expect_ok(submit(b, session_id), b, "submit")["success"] is True
    assert stream.wait_for_id("3"), f"`complete` from B did not reach A: {stream.snapshot()!r}"

    # Both nodes know the session.
    expect_valid(a, session_id)
    expect_valid(b, session_id)

    # The server ends A's stream when the session expires.
    remaining = expiry_ms / 1000 - time.time()
    assert stream.wait_ended(max(remaining, 0) + 2.5), (
        f"A did not close the stream of {session_id} within 2.5 s of its expiry\n{a.log()}"
    )
    assert stream.error is None, f"stream ended with an error, not a clean close: {stream.error!r}"
    assert stream.closed_by_server

    assert stream.retries[:1] == ["2000"] and stream.lines[:2] == ["retry: 2000", ""], stream.describe()
    assert flow_events(stream.snapshot()) == FULL_FLOW, stream.describe()
    assert stream.snapshot()[0] == info

    # After the TTL the session is gone on both nodes.
    time.sleep(max(0.0, expiry_ms / 1000 + 0.2 - time.time()))
    for node in (a, b):
        response = validate(node, session_id)
        assert response.status_code == 404, (
            f"validate-session after expiry on {node.name}: expected 404, got {response.status_code} {response.text}"
        )
        assert response.json()["valid"] is False, response.text
    assert redis.command("EXISTS", f"tandem:{{{session_id}}}:session") == 0


def test_subscriptions_follow_streams(cluster: Cluster) -> None:
    redis = cluster.redis()
    a = cluster.node("A", redis, ttl_seconds=60)
    b = cluster.node("B", redis, ttl_seconds=60)
    x, y = new_session_id(), new_session_id()
    cx, cy = channel_of(x), channel_of(y)
    assert redis.channels() == set() and redis.numpat() == 0

    x1 = Stream(a, x).start()
    x1.wait_opened()
    assert redis.channels() == {cx}, redis.channels()
    assert redis.numsub(cx) == 1
    assert redis.numpat() == 0

    # A second stream of X on the same node shares the subscription.
    x2 = Stream(a, x, cookie=x1.reader_cookie()).start()
    x2.wait_opened()
    assert redis.channels() == {cx}, redis.channels()
    assert redis.numsub(cx) == 1, "a second stream of X on A must not subscribe twice"
    assert redis.numpat() == 0

    y1 = Stream(b, y).start()
    y1.wait_opened()
    assert redis.channels() == {cx, cy}, redis.channels()
    assert redis.numsub(cx) == 1 and redis.numsub(cy) == 1
    assert redis.numpat() == 0

    # Closing one of X's two streams keeps the subscription.
    x1.close()
    time.sleep(HEARTBEAT_SECONDS + 1.0)  # time for A to notice the dropped connection
    assert redis.channels() == {cx, cy}, f"X unsubscribed while a stream of X was still open on A: {redis.channels()}"
    assert redis.numsub(cx) == 1

    # Closing the last one drops it; Y stays.
    x2.close()
    assert poll(lambda: redis.channels() == {cy}, UNSUBSCRIBE_WAIT), (
        f"after both X streams closed: channels {redis.channels()}, expected only {cy}\n{a.log()}"
    )
    assert redis.numsub(cx) == 0 and redis.numsub(cy) == 1
    assert redis.numpat() == 0

    # Traffic for X from B while nobody streams X: published and logged, but nobody subscribes.
    expect_flow(b, x)
    assert redis.command("LLEN", f"tandem:{{{x}}}:log") == 3
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert redis.channels() == {cy}, f"subscriptions appeared for traffic with no stream: {redis.channels()}"
        assert redis.numpat() == 0
        time.sleep(0.1)

    y1.close()
    assert poll(lambda: redis.channels() == set(), UNSUBSCRIBE_WAIT), redis.channels()
    for stream in (x1, x2, y1):
        assert stream.error is None, f"{stream.session_id}@{stream.node.name}: {stream.error!r}"


def test_redis_outage_is_503_then_recovers(cluster: Cluster) -> None:
    redis = cluster.redis(persistent=True)
    a = cluster.node("A", redis, ttl_seconds=120)
    b = cluster.node("B", redis, ttl_seconds=120)
    nodes = (a, b)
    session_id = new_session_id()
    other_id = new_session_id()

    stream = Stream(a, session_id).start()
    stream.wait_opened()
    assert redis.command("EXISTS", f"tandem:{{{session_id}}}:session") == 1

    # --- Outage.
    redis.stop()
    assert redis.process is not None and not redis.process.running(), "redis-server did not exit"
    outage_started = time.monotonic()

    def answers_503(node: Node) -> bool:
        return input_started(node, session_id).status_code == 503

    for node in nodes:
        assert poll(lambda: answers_503(node), 5.0, 0.2), (
            f"node {node.name} did not answer 503 within 5 s of Redis stopping: "
            f"{input_started(node, session_id).status_code} {input_started(node, session_id).text}\n{node.log()}"
        )
        assert node.process.wait_for_line(UNREACHABLE, 5.0), f"node {node.name} never logged '{UNREACHABLE}'\n{node.log()}"

    def expect_503_action(node: Node, response: httpx.Response, what: str) -> None:
        assert response.status_code == 503, f"{what} on {node.name} during the outage: {response.status_code} {response.text}"
        body = response.json()
        assert body["success"] is False and body["code"] == "service_unavailable", f"{what} on {node.name}: {body}"

    requests = 0
    for _ in range(2):
        for node in nodes:
            expect_503_action(node, input_started(node, session_id), "POST /api/input-started")
            expect_503_action(node, submit(node, session_id), "POST /api/submit")
            expect_503_action(node, input_started(node, other_id), "POST /api/input-started (another session)")
            response = validate(node, session_id)
            assert response.status_code == 503, f"validate-session on {node.name}: {response.status_code} {response.text}"
            body = response.json()
            assert body["valid"] is False and body["code"] == "service_unavailable", body
            response = health(node)
            assert response.status_code == 503, f"/healthz on {node.name}: {response.status_code} {response.text}"
            body = response.json()
            assert body["status"] == "degraded" and body["broker"]["available"] is False, body
            requests += 5
        time.sleep(0.5)
    assert requests >= 10

    # Let several reconnect attempts fail (100 ms doubling: ~3 s covers five of them), then count the warnings.
    time.sleep(max(0.0, outage_started + 3.5 - time.monotonic()))
    for node in nodes:
        lines = node.process.matching(UNREACHABLE)
        assert len(lines) == 1, f"node {node.name} logged {len(lines)} '{UNREACHABLE}' lines for one outage:\n" + "\n".join(lines)

    stream_open_during_outage = not stream.ended.is_set()

    # --- Recovery: same port, same directory, data read back from the append-only file.
    restart_marks = {node.name: len(node.process.lines) for node in nodes}
    redis.start(port=redis.port)
    restarted = time.monotonic()
    assert redis.command("HGET", f"tandem:{{{session_id}}}:session", "status") == "waiting", "session did not survive the restart"

    for node in nodes:
        left = RECOVERY_WAIT - (time.monotonic() - restarted)
        assert poll(lambda: health(node).status_code == 200, max(left, 0.0), 0.2), (
            f"/healthz on {node.name} not 200 within {RECOVERY_WAIT}s of Redis restarting: {health(node).text}\n{node.log()}"
        )
        assert node.process.wait_for_line(REACHABLE_AGAIN, 2.0, start=restart_marks[node.name]), (
            f"node {node.name} never logged '{REACHABLE_AGAIN}'\n{node.log()}"
        )
        assert health(node).json()["status"] == "ok"
        assert node.process.count(UNREACHABLE) == 1, node.process.matching(UNREACHABLE)

    stream_open_after_recovery = not stream.ended.is_set()
    print(
        f"\n[fault] A's stream open during outage: {stream_open_during_outage}; after recovery: "
        f"{stream_open_after_recovery} (error {stream.error!r}, closed_by_server {stream.closed_by_server})"
    )
    reader = stream
    if not stream_open_after_recovery:
        last = [e.id for e in stream.snapshot() if e.id is not None]
        reader = Stream(a, session_id, last_event_id=last[-1] if last else "0", cookie=stream.reader_cookie()).start()
        reader.wait_opened()

    expect_flow(b, session_id)
    assert reader.wait_for_id("3"), f"A's stream after recovery: {reader.snapshot()!r}\n{a.log()}\n{b.log()}"
    time.sleep(HEARTBEAT_SECONDS + 0.5)  # a duplicate would arrive by now
    assert flow_events(reader.snapshot()) == FULL_FLOW, reader.describe()
    if not stream_open_after_recovery:
        warnings.warn(
            "A's stream was closed during the Redis outage (the flow still arrived after reconnecting with "
            f"Last-Event-ID); error {stream.error!r}, closed_by_server {stream.closed_by_server}"
        )
    reader.close()
    assert reader.error is None, repr(reader.error)


def test_resume_on_other_node_with_last_event_id(cluster: Cluster) -> None:
    redis = cluster.redis()
    a = cluster.node("A", redis, ttl_seconds=60)
    b = cluster.node("B", redis, ttl_seconds=60)
    session_id = new_session_id()

    first = Stream(a, session_id).start()
    first.wait_opened()
    expect_valid(b, session_id)
    assert first.wait_for_id("1"), f"`connected` did not reach A: {first.snapshot()!r}"
    first.close()
    assert first.error is None, repr(first.error)
    assert flow_events(first.snapshot()) == [("connected", "1", {})]

    assert expect_ok(input_started(b, session_id), b, "input-started") == {"success": True}
    assert expect_ok(submit(b, session_id), b, "submit")["success"] is True

    resumed = Stream(b, session_id, last_event_id="1", cookie=first.reader_cookie()).start()
    resumed.wait_opened()
    assert resumed.wait_for_id("3"), f"resume on B: {resumed.snapshot()!r}\n{b.log()}"
    time.sleep(HEARTBEAT_SECONDS + 1.0)  # a duplicate would arrive by now
    resumed.close()
    assert resumed.error is None, repr(resumed.error)

    events = resumed.snapshot()
    assert is_session_info(events[0]) and events[0].id == "1", f"session-info on resume: {events[0]!r}"
    assert flow_events(events) == FULL_FLOW[1:], resumed.describe()
    assert resumed.lines[:2] == ["retry: 2000", ""], resumed.describe()


def test_sigterm_drains_a_node_mid_flow_and_nothing_is_lost(cluster: Cluster) -> None:
    """SIGTERM to the node holding the PC's stream, between input-started and complete: the node ends its streams
    with a short retry hint and exits within its drain deadline; the PC reconnects (as EventSource would, through a
    balancer) to the other node with its Last-Event-ID and cookie, and gets exactly what it missed."""
    redis = cluster.redis()
    a = cluster.node("A", redis, ttl_seconds=60)
    b = cluster.node("B", redis, ttl_seconds=60)
    session_id = new_session_id()

    stream = Stream(a, session_id).start()
    stream.wait_opened()
    expect_valid(b, session_id)
    assert expect_ok(input_started(b, session_id), b, "input-started") == {"success": True}
    assert stream.wait_for_id("2"), f"input-started did not reach A: {stream.snapshot()!r}"

    started = time.monotonic()
    a.process.stop(signal.SIGTERM)
    drain_seconds = time.monotonic() - started
    assert a.process.process.returncode == 0, f"A exited with {a.process.process.returncode}\n{a.log()}"
    assert drain_seconds < 10.0, f"A took {drain_seconds:.1f}s to drain (deadline 10 s)"
    assert a.process.wait_for_line("Tandem stopped", 1.0), a.log()
    assert stream.wait_ended(5.0), "A's stream did not end when A drained"
    assert "retry: 250" in stream.lines, f"no short retry hint before the stream ended: {stream.lines[-6:]!r}"

    # The phone finishes while the PC is between nodes: the event is stored, so it is not lost.
    assert expect_ok(submit(b, session_id), b, "submit")["success"] is True
    resumed = Stream(b, session_id, last_event_id="2", cookie=stream.reader_cookie()).start()
    resumed.wait_opened()
    assert resumed.wait_for_id("3"), f"resume on B after A drained: {resumed.snapshot()!r}\n{b.log()}"
    time.sleep(HEARTBEAT_SECONDS + 1.0)  # a duplicate would arrive by now
    resumed.close()
    assert flow_events(stream.snapshot()) == FULL_FLOW[:2], stream.describe()
    assert flow_events(resumed.snapshot()) == FULL_FLOW[2:], resumed.describe()


def test_a_second_reader_without_the_openers_key_gets_nothing_on_any_node(cluster: Cluster) -> None:
    """Whoever has the session ID (it is in the QR code) but not the opener's reader key is refused on every node,
    for a session opened the article's way (key in a cookie) and for one made by POST /api/sessions (key in the
    URL); the opener keeps getting everything, including the submitted data."""
    redis = cluster.redis()
    a = cluster.node("A", redis, ttl_seconds=60)
    b = cluster.node("B", redis, ttl_seconds=60)

    seed_style = new_session_id()
    opener = Stream(a, seed_style).start()
    opener.wait_opened()
    cookie = opener.reader_cookie()
    assert cookie is not None

    with b.client() as client:
        made = client.post("/api/sessions")
    assert made.status_code == 201, made.text
    server_made = made.json()["sessionId"]
    key = made.json()["readerKey"]
    key_opener = Stream(b, server_made, key=key).start()
    key_opener.wait_opened()

    for session_id in (seed_style, server_made):
        for node in (a, b):
            for headers in ({}, {"Cookie": f"tandem_reader_{session_id}=guessed"}, {"Last-Event-ID": "0"}):
                with node.client() as client:
                    response = client.get("/api/events", params={"session": session_id}, headers=headers)
                assert response.status_code == 403, (node.name, session_id, headers, response.status_code, response.text)
                body = response.json()
                assert body["code"] == "reader_key_required", body
                assert NAME not in response.text and PHONE not in response.text
        # The phone writes (the QR code's power), through either node.
        expect_valid(b, session_id)
        assert expect_ok(submit(a, session_id), a, "submit")["success"] is True

    assert opener.wait_for_id("2"), opener.describe()
    assert key_opener.wait_for_id("2"), key_opener.describe()
    for stream in (opener, key_opener):
        stream.close()
        assert flow_events(stream.snapshot()) == [("connected", "1", {}), ("complete", "2", {"name": NAME, "phone": PHONE})]
