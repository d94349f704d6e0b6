"""What the end-to-end tests in this folder share: child processes, `tandem` nodes, `redis-server`, SSE streams
and the phone's requests.

- Processes: `LoggedProcess` collects a child's output in daemon threads (so no pipe fills up) and is stopped by its
  PID, SIGTERM first and SIGKILL if it lingers, every wait bounded.
- `Cluster` starts what one test (or one module) needs, Redis servers and Tandem nodes, each on a free loopback
  port, and stops every one of them by PID in `close()` (or on leaving `with`), passed or failed.
- `StreamThread` reads GET /api/events in a daemon thread; the test thread only ever waits on it with deadlines.
  `Stream` parses the stream itself (WHATWG-style) and keeps every line, comment and `retry` field; the
  third-party parsers of test_sse_external.py subclass `StreamThread` with their own reading.
- `validate`, `input_started` and `submit` send the phone's requests through an `httpx.Client` or a node;
  `expect_*` check their answers.

The binary is $TANDEM_BINARY or .build/debug/tandem (`swift build --product tandem`). conftest.py puts this folder
on sys.path, so the tests import this module as `tandem_e2e`.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Union

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / ".build" / "debug" / "tandem"

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0  # after SIGTERM, before SIGKILL; and again after SIGKILL
PORT_ATTEMPTS = 3  # another process may take a free port between our probe and the child's bind

HEARTBEAT_SECONDS = 1  # what the nodes of the stream tests are started with
REQUEST_TIMEOUT = httpx.Timeout(5.0)
# A stream's read timeout only has to outlast the heartbeat period.
STREAM_TIMEOUT = httpx.Timeout(connect=5.0, read=HEARTBEAT_SECONDS + 4.0, write=5.0, pool=5.0)
# How long one event may take to reach a stream once its cause has been answered.
EVENT_WAIT = 5.0

NAME = "山田太郎"
PHONE = "090-1234-5678"


def _no_context() -> str:
    return ""


# --------------------------------------------------------------------------------------------------------------
# Processes


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def poll(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Whether `condition()` holds within `timeout` seconds, asked every `interval` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class LoggedProcess:
    """A child process whose stdout and stderr lines are collected by daemon threads, so no pipe fills up. `lines`
    holds both in arrival order; `stderr_lines` only standard error (where Tandem's logs go), `stdout_lines` only
    standard output."""

    def __init__(
        self, args: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.args = args
        self.stop_timeout = stop_timeout
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

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Whether `ready()` (a probe of what the process serves) holds within `timeout` seconds, asked every 50 ms
        while the process runs; False at once if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                return False
            if ready():
                return True
            time.sleep(0.05)
        return False

    def count(self, text: str) -> int:
        with self._changed:
            return sum(text in line for line in self.lines)

    def matching(self, text: str) -> list[str]:
        """The lines (either stream) that contain `text`."""
        with self._changed:
            return [line.rstrip("\n") for line in self.lines if text in line]

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
            self.process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=self.stop_timeout)

    def wait_output_closed(self, timeout: float | None = None) -> bool:
        """After the process exited: whether the reader threads have taken every line of its output."""
        return self.drained.wait(self.stop_timeout if timeout is None else timeout)


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
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
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
    """`redis-server` on loopback with its files in `directory`; `persistent` keeps an append-only file, fsynced on
    every write, so that a restart in the same directory reads the data back."""

    def __init__(self, directory: Path, persistent: bool = False, stop_timeout: float = STOP_TIMEOUT) -> None:
        self.directory = directory
        self.persistent = persistent
        self.stop_timeout = stop_timeout
        self.port = 0
        self.process: LoggedProcess | None = None
        self.url = ""

    def _args(self) -> list[str]:
        args = ["redis-server", "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--dir", str(self.directory)]
        if self.persistent:
            return args + ["--appendonly", "yes", "--appendfsync", "always"]
        return args + ["--appendonly", "no"]

    def start(self, port: int | None = None) -> None:
        """Starts on `port`, or on a free port (retrying if another process takes it first)."""
        for _ in range(1 if port is not None else PORT_ATTEMPTS):
            self.port = port if port is not None else free_loopback_port()
            self.process = LoggedProcess(self._args(), cwd=self.directory, stop_timeout=self.stop_timeout)
            if self.process.wait_ready(self._answers_ping, STARTUP_TIMEOUT):
                self.url = f"redis://{LOOPBACK}:{self.port}/0"
                return
            self.process.stop(signal.SIGKILL)
        pytest.fail(f"redis-server did not start on port {self.port}; its log:\n{self.process.tail() if self.process else ''}")

    def _answers_ping(self) -> bool:
        try:
            # Also fails with LOADING while an append-only file is read back after a restart.
            return redis_command(self.port, "PING", timeout=1.0) == "PONG"
        except (OSError, RedisError):
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGTERM)

    def command(self, *args: str | int) -> Any:
        return redis_command(self.port, *args)

    def channels(self) -> set[str]:
        return set(self.command("PUBSUB", "CHANNELS", "tandem:*"))

    def numsub(self, channel: str) -> int:
        reply = self.command("PUBSUB", "NUMSUB", channel)
        return int(reply[1])

    def numpat(self) -> int:
        return int(self.command("PUBSUB", "NUMPAT"))


# --------------------------------------------------------------------------------------------------------------
# Tandem nodes


def tandem_binary() -> str:
    binary = os.environ.get("TANDEM_BINARY", str(DEFAULT_BINARY))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"Tandem binary not found or not executable: {binary} (run `swift build --product tandem` or set TANDEM_BINARY)")
    return binary


@dataclass
class Node:
    """A running `tandem`: its name in the test, its port and its process."""

    name: str
    port: int
    process: LoggedProcess

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT)

    def log(self) -> str:
        return f"--- node {self.name} (port {self.port}, pid {self.process.pid}) log:\n{self.process.tail()}"


# A node's settings (environment variables on top of ours), or a function of its port for settings that name it.
Settings = Union[Mapping[str, str], Callable[[int], Mapping[str, str]]]


class Cluster:
    """The processes of one test (or one module): Redis servers and Tandem nodes. `close()`, also run on leaving
    `with`, stops every one of them by its PID: the nodes first, newest first, then Redis."""

    def __init__(self, directory: Path | None = None, stop_timeout: float = STOP_TIMEOUT) -> None:
        self.directory = directory  # where Redis servers keep their files
        self.stop_timeout = stop_timeout
        self.processes: list[LoggedProcess] = []
        self.redis_servers: list[RedisServer] = []

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def redis(self, persistent: bool = False) -> RedisServer:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server not found on PATH (Debian: apt-get install redis-server)")
        assert self.directory is not None, "a Cluster that starts Redis needs a directory"
        directory = self.directory / f"redis-{len(self.redis_servers)}"
        directory.mkdir()
        server = RedisServer(directory, persistent, self.stop_timeout)
        self.redis_servers.append(server)
        server.start()
        return server

    def tandem(
        self, name: str, settings: Settings, *, unset: Iterable[str] = (), port: int | None = None,
        retry_delay: float = 0.0,
    ) -> Node:
        """Starts `tandem` on `port` (or a free one) with HOST, PORT and `settings` on top of our environment, minus
        the variables in `unset`, and waits for it to log that it listens (and, with BROKER=redis, that it
        connected to Redis). A start that fails is retried, on another free port unless `port` is given."""
        binary = tandem_binary()
        removed = set(unset)
        process: LoggedProcess | None = None
        for _ in range(PORT_ATTEMPTS):
            node_port = port if port is not None else free_loopback_port()
            env = {key: value for key, value in os.environ.items() if key not in removed}
            env.update(HOST=LOOPBACK, PORT=str(node_port))
            env.update(settings(node_port) if callable(settings) else settings)
            process = LoggedProcess([binary], env=env, cwd=REPO_ROOT, stop_timeout=self.stop_timeout)
            self.processes.append(process)
            if process.wait_for_line(f"Tandem listening on {LOOPBACK}:{node_port}", STARTUP_TIMEOUT):
                node = Node(name, node_port, process)
                if env.get("BROKER") == "redis":
                    assert process.wait_for_line("connected to Redis", STARTUP_TIMEOUT), (
                        f"node {name} never logged 'connected to Redis'\n{node.log()}"
                    )
                return node
            process.stop()
            time.sleep(retry_delay)
        pytest.fail(f"node {name} did not report 'Tandem listening on ...' in time; its log:\n{process.tail() if process else ''}")

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


# --------------------------------------------------------------------------------------------------------------
# SSE streams read in background threads


class Target(Protocol):
    """Where a stream or a request goes: a node, or a proxy in front of nodes."""

    name: str

    @property
    def base_url(self) -> str: ...

    def client(self) -> httpx.Client: ...


class StreamThread:
    """Reads GET /api/events in a daemon thread; the test thread only waits on it with deadlines. Subclasses read
    the body in `_read`; a stream the server fails to close ends at the latest when its server is stopped."""

    def __init__(
        self, base_url: str, session_id: str, last_event_id: str | None = None, cookie: str | None = None,
        key: str | None = None, label: str | None = None,
    ) -> None:
        self.url = f"{base_url}/api/events"
        self.session_id = session_id
        self.params = {"session": session_id} if key is None else {"session": session_id, "key": key}
        self.request_headers: dict[str, str] = {}
        if last_event_id is not None:
            self.request_headers["Last-Event-ID"] = last_event_id
        # The opener's reader key, which the server sets as a cookie and a browser sends on every reconnect.
        if cookie is not None:
            self.request_headers["Cookie"] = cookie
        self.status: int | None = None
        self.response_headers: httpx.Headers | None = None
        self.set_cookies: list[str] = []
        self.body = b""
        self.events: list[Any] = []
        self.error: BaseException | None = None
        self.opened_at: float | None = None
        self.ended_at: float | None = None
        self.closed_by_server = False
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"sse-{label or session_id}", daemon=True)

    # Running

    def start(self) -> Any:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Asks the reader to stop at the next chunk it reads (a heartbeat at the latest; the server may still
        close the stream first)."""
        self._stop.set()

    def _run(self) -> None:
        try:
            self.opened_at = time.monotonic()
            with httpx.Client(timeout=STREAM_TIMEOUT) as client:
                self.closed_by_server = self._read(client)
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            self.error = error
        finally:
            self.ended_at = time.monotonic()
            with self._changed:
                self.ended.set()
                self._changed.notify_all()

    def _read(self, client: httpx.Client) -> bool:
        """Opens and reads the stream; True when the server ended it (or refused it), False when we stopped."""
        raise NotImplementedError

    def _got_response(self, response: httpx.Response) -> bool:
        """Records the response's status and headers (and its body unless 200); whether it is 200."""
        ok = response.status_code == 200
        body = b"" if ok else response.read()
        with self._changed:
            self.status = response.status_code
            self.response_headers = response.headers
            self.set_cookies = response.headers.get_list("set-cookie")
            self.body = body
            self._changed.notify_all()
        return ok

    def _add(self, event: Any) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    # Waiting

    def wait_until(self, predicate: Callable[[], bool], timeout: float = EVENT_WAIT) -> bool:
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

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = EVENT_WAIT) -> bool:
        return self.wait_until(lambda: predicate(self.events), timeout)

    def wait_for_response(self, timeout: float = EVENT_WAIT) -> None:
        self.wait_until(lambda: self.status is not None, timeout)
        assert self.status is not None, f"no response to GET /api/events within {timeout}s (error: {self.error!r})"

    def wait_ended(self, timeout: float) -> bool:
        return self.ended.wait(timeout)

    def snapshot(self) -> list[Any]:
        with self._changed:
            return list(self.events)


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


class Stream(StreamThread):
    """A stream parsed by a small WHATWG-style parser of our own, which records events, comments and `retry`
    fields, each with its arrival time, and every line as it came."""

    def __init__(
        self, target: Target, session_id: str, last_event_id: str | None = None, cookie: str | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(target.base_url, session_id, last_event_id, cookie, key, label=f"{target.name}-{session_id}")
        self.target = target
        self.request_headers["Accept"] = "text/event-stream"
        self.comments: list[tuple[str, float]] = []
        self.retries: list[str] = []
        self.lines: list[str] = []

    def _read(self, client: httpx.Client) -> bool:
        with client.stream("GET", self.url, params=self.params, headers=self.request_headers) as response:
            if not self._got_response(response):
                return True
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

    def wait_response(self, timeout: float = EVENT_WAIT) -> None:
        self.wait_for_response(timeout)
        assert self.status == 200, (
            f"GET /api/events?session={self.session_id} via {self.target.name}: status {self.status}, "
            f"body {self.body!r}, error {self.error!r}"
        )

    def wait_for_id(self, event_id: str, timeout: float = EVENT_WAIT) -> Event | None:
        """The named event with this id, once it arrived (within `timeout`); None if it did not."""

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
        assert self.wait_ended(HEARTBEAT_SECONDS + 3.0), f"could not drop stream {self.session_id} via {self.target.name}"

    def describe(self) -> str:
        with self._changed:
            return "\n".join(self.lines[-40:])


class PhoneStream(Stream):
    """The phone's own channel, GET /api/phone/events, with the phone key cookie its validate got (see `_request`)."""

    def __init__(self, target: Target, session_id: str, last_event_id: str | None = None) -> None:
        name = f"tandem_phone_{session_id}"
        cookie = f"{name}={_PHONE_COOKIES[name]}" if name in _PHONE_COOKIES else None
        super().__init__(target, session_id, last_event_id, cookie)
        self.url = f"{target.base_url}/api/phone/events"


def is_session_info(event: Event) -> bool:
    try:
        return event.name == "message" and event.json().get("type") == "session-info"
    except ValueError:
        return False


def flow_events(events: list[Event]) -> list[tuple[str, str | None, Any]]:
    """(name, id, data) of every event but session-info."""
    return [e.simple() for e in events if not is_session_info(e)]


class _PairingCode:
    """Equal to any pairing code as the server makes them (four digits): `connected` carries the code of the phone
    that claimed the session, made by the server, so a test cannot know it in advance."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and len(other) == 4 and other.isdigit()

    def __repr__(self) -> str:
        return "<pairing code>"


PAIRING_CODE: Any = _PairingCode()


def full_flow(name: str = NAME, phone: str = PHONE) -> list[tuple[str, str, Any]]:
    return [
        ("connected", "1", {"code": PAIRING_CODE}), ("input-started", "2", {}),
        ("complete", "3", {"name": name, "phone": phone}),
    ]


# --------------------------------------------------------------------------------------------------------------
# The phone's requests


def new_session_id(prefix: str = "sess") -> str:
    return f"{prefix}_" + secrets.token_hex(8)


# The phone: the first phone call to a session claims it and gets a phone key cookie (first scan wins). Requests made
# through a node (a client of their own) are one phone per session, whatever node they go to: its cookies are kept
# here. A test that needs a second phone passes an httpx.Client of its own.
_PHONE_COOKIES: dict[str, str] = {}


def _request(target: httpx.Client | Target, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request through `target`: an open client, or a node (a client of its own, closed afterwards)."""
    if isinstance(target, httpx.Client):
        return target.request(method, path, **kwargs)
    with target.client() as client:
        for name, value in _PHONE_COOKIES.items():
            client.cookies.set(name, value)
        response = client.request(method, path, **kwargs)
        for name, value in response.cookies.items():
            if name.startswith("tandem_phone_"):
                _PHONE_COOKIES[name] = value
        return response


def validate(target: httpx.Client | Target, session_id: str, token: str | None = None) -> httpx.Response:
    """validate-session; `token` is the QR code's pairing token, which a session made by POST /api/sessions needs."""
    params = {"session": session_id} if token is None else {"session": session_id, "t": token}
    return _request(target, "GET", "/api/validate-session", params=params)


def input_started(target: httpx.Client | Target, session_id: str) -> httpx.Response:
    return _request(target, "POST", "/api/input-started", json={"sessionId": session_id})


def submit(target: httpx.Client | Target, session_id: str, name: str = NAME, phone: str = PHONE) -> httpx.Response:
    return _request(target, "POST", "/api/submit", json={"sessionId": session_id, "name": name, "phone": phone})


def expect_ok(response: httpx.Response, what: str, context: Callable[[], str] = _no_context) -> Any:
    """The JSON body of a 200; `context()` (a node's log, say) is added to the message of any other status."""
    assert response.status_code == 200, f"{what}: {response.status_code} {response.text}\n{context()}"
    return response.json()


def _context_of(target: httpx.Client | Target, context: Callable[[], str] | None) -> Callable[[], str]:
    if context is not None:
        return context
    return target.log if isinstance(target, Node) else _no_context


def expect_valid(
    target: httpx.Client | Target, session_id: str, context: Callable[[], str] | None = None, token: str | None = None,
) -> None:
    """validate-session answers 200 with `valid: true` (a node's log, or `context()`, goes into the message)."""
    body = expect_ok(validate(target, session_id, token), f"validate-session {session_id}", _context_of(target, context))
    assert body["valid"] is True, body


def expect_input_started(target: httpx.Client | Target, session_id: str, context: Callable[[], str] | None = None) -> None:
    body = expect_ok(input_started(target, session_id), f"input-started {session_id}", _context_of(target, context))
    assert body == {"success": True}, body


def expect_submitted(
    target: httpx.Client | Target, session_id: str, name: str = NAME, phone: str = PHONE,
    context: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """submit answers 200 with `success: true`; returns the body."""
    body = expect_ok(submit(target, session_id, name, phone), f"submit {session_id}", _context_of(target, context))
    assert body["success"] is True, body
    return body
