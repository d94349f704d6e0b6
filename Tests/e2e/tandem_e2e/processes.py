"""Child processes: free loopback ports, bounded polling, and `LoggedProcess`, which collects a child's output in
daemon threads (so no pipe fills up) and is stopped by its PID, SIGTERM first and SIGKILL if it lingers, every wait
bounded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0  # after SIGTERM, before SIGKILL; and again after SIGKILL
PORT_ATTEMPTS = 3  # another process may take a free port between our probe and the child's bind


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

