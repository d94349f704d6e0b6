"""SSE streams read in background threads, and the events a flow is expected to produce.

`StreamThread` reads GET /api/events in a daemon thread; the test thread only ever waits on it with deadlines.
`Stream` parses the stream itself (WHATWG-style) and keeps every line, comment and `retry` field; the third-party
parsers of test_sse_external.py subclass `StreamThread` with their own reading. `PhoneStream` is the phone's own
channel."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

from tandem_e2e.nodes import Target
from tandem_e2e.phone import NAME, PHONE, phone_cookie

HEARTBEAT_SECONDS = 1  # what the nodes of the stream tests are started with
# A stream's read timeout only has to outlast the heartbeat period.
STREAM_TIMEOUT = httpx.Timeout(connect=5.0, read=HEARTBEAT_SECONDS + 4.0, write=5.0, pool=5.0)
# How long one event may take to reach a stream once its cause has been answered.
EVENT_WAIT = 5.0


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
    """The phone's own channel, GET /api/phone/events, with the phone key cookie its validate got (see phone.py)."""

    def __init__(self, target: Target, session_id: str, last_event_id: str | None = None) -> None:
        super().__init__(target, session_id, last_event_id, phone_cookie(session_id))
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

