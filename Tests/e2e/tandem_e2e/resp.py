"""The repository's one RESP2 (Redis protocol) implementation: the end-to-end tests talk to their redis-server with
it, and so do the benchmark scripts of benchmarks/redis-scripts.

It lives here, in the end-to-end helpers, because the tests are its main user and already have this folder on
sys.path (conftest.py); the benchmark scripts put Tests/e2e on sys.path themselves (see benchmarks/redis-scripts/rb.py).
It uses only the standard library, and neither this module nor the package's __init__ imports httpx or pytest, so a
plain `python3` can run those scripts.

- `encode_command(*args)`: one command as a RESP array of bulk strings (str as UTF-8, bytes as they are, anything
  else through str()).
- `RespParser`: an incremental reply parser: `feed()` it bytes as they arrive, in pieces of any size, and `pop()`
  whole replies (`INCOMPLETE` until one has fully arrived). Simple strings and errors come out as str and
  `RedisError` (a value, not raised: a pipeline's replies and an array's items stay in place), integers as int, bulk
  strings as bytes (or str, UTF-8 with replacement, with `decode=True`), arrays as lists; null bulk strings and null
  arrays as None.
- `RedisConnection`: one connection; `command()` sends one command and returns its reply (raising an error reply),
  `pipeline()` sends several in one write and returns every reply in order (error replies as values), `send()` and
  `read_reply()` are the two halves (for a subscriber, say).
- `redis_command(port, *args)`: one command over a fresh connection, bulk strings decoded, what the tests use.
"""

from __future__ import annotations

import socket
from typing import Any, Iterable, Sequence

DEFAULT_HOST = "127.0.0.1"
_RECEIVE_SIZE = 1 << 16


class RedisError(Exception):
    """An error reply (`-ERR ...`); `ProtocolError` when the bytes are not RESP2 at all."""


class ProtocolError(RedisError):
    """What arrived is not a RESP2 reply; the connection cannot be read any further."""


class _Incomplete:
    def __repr__(self) -> str:
        return "INCOMPLETE"


# What `RespParser.pop()` returns while no whole reply has arrived (None is a reply: a null bulk string or array).
INCOMPLETE: Any = _Incomplete()


# --------------------------------------------------------------------------------------------------------------
# Encoding


def _bulk(arg: str | bytes | int | float) -> bytes:
    data = arg if isinstance(arg, (bytes, bytearray)) else str(arg).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_command(*args: str | bytes | int | float) -> bytes:
    """One command, as Redis reads them: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(_bulk(arg) for arg in args)


def encode_commands(commands: Iterable[Sequence[str | bytes | int | float]]) -> bytes:
    """Several commands, back to back (a pipeline)."""
    return b"".join(encode_command(*command) for command in commands)


# --------------------------------------------------------------------------------------------------------------
# Decoding


class _NeedMore(Exception):
    pass


def _number(text: bytes, line: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f"not a number in reply line {line!r}") from None


def _parse(buffer: bytearray, start: int, decode: bool) -> tuple[Any, int]:
    """The reply that starts at `start` and the offset just past it; `_NeedMore` if it has not fully arrived."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise _NeedMore
    line = bytes(buffer[start:end])
    kind, rest, position = line[:1], line[1:], end + 2
    if kind == b"+":
        return rest.decode("utf-8", errors="replace"), position
    if kind == b"-":
        return RedisError(rest.decode("utf-8", errors="replace")), position
    if kind == b":":
        return _number(rest, line), position
    if kind == b"$":
        size = _number(rest, line)
        if size == -1:
            return None, position
        if size < 0:
            raise ProtocolError(f"bad bulk string length in {line!r}")
        if len(buffer) < position + size + 2:
            raise _NeedMore
        if buffer[position + size:position + size + 2] != b"\r\n":
            raise ProtocolError(f"bulk string of length {size} not followed by CRLF")
        data = bytes(buffer[position:position + size])
        return (data.decode("utf-8", errors="replace") if decode else data), position + size + 2
    if kind == b"*":
        size = _number(rest, line)
        if size == -1:
            return None, position
        if size < 0:
            raise ProtocolError(f"bad array length in {line!r}")
        items = []
        for _ in range(size):
            item, position = _parse(buffer, position, decode)
            items.append(item)
        return items, position
    raise ProtocolError(f"unexpected reply line {line!r}")


class RespParser:
    """Turns the bytes Redis sends, fed in pieces of any size, into replies (see the module's docstring)."""

    def __init__(self, decode: bool = False) -> None:
        self.decode = decode
        self._buffer = bytearray()
        self._start = 0  # where the next reply begins: what came before has been popped

    def feed(self, data: bytes) -> None:
        if self._start:
            del self._buffer[:self._start]
            self._start = 0
        self._buffer += data

    def pop(self) -> Any:
        """The next whole reply, or `INCOMPLETE`. Raises `ProtocolError` on bytes that are not RESP2."""
        try:
            reply, self._start = _parse(self._buffer, self._start, self.decode)
        except _NeedMore:
            return INCOMPLETE
        return reply

    def pending(self) -> int:
        """How many bytes have arrived of replies not yet popped."""
        return len(self._buffer) - self._start


# --------------------------------------------------------------------------------------------------------------
# A connection


class RedisConnection:
    """One connection to Redis (TCP_NODELAY, every read and write bounded by `timeout` unless it is None). Bulk
    strings are str with `decode=True`, else bytes. Close it, or use it in `with`."""

    def __init__(
        self, port: int, host: str = DEFAULT_HOST, timeout: float | None = 3.0, decode: bool = True,
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = RespParser(decode)

    def __enter__(self) -> "RedisConnection":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, *commands: Sequence[str | bytes | int | float]) -> None:
        """Writes these commands in one go, without reading their replies."""
        self.sock.sendall(encode_commands(commands))

    def read_reply(self) -> Any:
        """The next reply (an error reply as a `RedisError` value); ConnectionError if Redis closes first."""
        while True:
            reply = self.parser.pop()
            if reply is not INCOMPLETE:
                return reply
            data = self.sock.recv(_RECEIVE_SIZE)
            if not data:
                raise ConnectionError(
                    f"Redis closed the connection mid-reply ({self.parser.pending()} bytes of it arrived)"
                    if self.parser.pending() else "Redis closed the connection"
                )
            self.parser.feed(data)

    def pipeline(self, commands: Iterable[Sequence[str | bytes | int | float]]) -> list[Any]:
        """Sends the commands in one write and returns their replies in order, error replies as values."""
        commands = list(commands)
        self.send(*commands)
        return [self.read_reply() for _ in commands]

    def command(self, *args: str | bytes | int | float) -> Any:
        """Sends one command and returns its reply; raises it if it is an error reply."""
        self.send(args)
        reply = self.read_reply()
        if isinstance(reply, RedisError):
            raise reply
        return reply


def redis_command(port: int, *args: str | bytes | int | float, timeout: float = 3.0) -> Any:
    """Sends one command over a fresh connection to 127.0.0.1 and returns its reply, bulk strings decoded as UTF-8;
    raises an error reply as `RedisError`."""
    with RedisConnection(port, timeout=timeout) as connection:
        return connection.command(*args)
