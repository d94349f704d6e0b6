"""Tandem nodes and the processes of one test: `Cluster` starts Redis servers and `tandem` nodes, each on a free
loopback port, and stops every one of them by PID in `close()` (or on leaving `with`), passed or failed.

The binary is $TANDEM_BINARY or .build/debug/tandem (`swift build --product tandem`)."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Union

import httpx
import pytest

from tandem_e2e.processes import (
    LOOPBACK, PORT_ATTEMPTS, STARTUP_TIMEOUT, STOP_TIMEOUT, LoggedProcess, free_loopback_port,
)
from tandem_e2e.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_BINARY = REPO_ROOT / ".build" / "debug" / "tandem"

REQUEST_TIMEOUT = httpx.Timeout(5.0)


def tandem_binary() -> str:
    binary = os.environ.get("TANDEM_BINARY", str(DEFAULT_BINARY))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"Tandem binary not found or not executable: {binary} (run `swift build --product tandem` or set TANDEM_BINARY)")
    return binary


class Target(Protocol):
    """Where a stream or a request goes: a node, or a proxy in front of nodes."""

    name: str

    @property
    def base_url(self) -> str: ...

    def client(self) -> httpx.Client: ...


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
                if env.get("BROKER") in ("redis", "redis-cluster"):
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
