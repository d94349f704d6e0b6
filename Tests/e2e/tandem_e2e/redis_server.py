"""`redis-server` on a free loopback port, spoken to through the RESP client of resp.py."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tandem_e2e.processes import (
    LOOPBACK, PORT_ATTEMPTS, STARTUP_TIMEOUT, STOP_TIMEOUT, LoggedProcess, free_loopback_port,
)
from tandem_e2e.resp import RedisError, redis_command


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

