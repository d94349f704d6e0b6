"""End-to-end checks of Tandem's SSE stream with SSE clients we did not write.

The server binary is started once for this module with a short session TTL and a one-second heartbeat; each test
opens `/api/events` with a third-party client (httpx-sse or sseclient-py), drives the phone side with plain httpx,
and checks what the client parsed: event names, ids and JSON payloads, resume with `Last-Event-ID`, heartbeat
comments and the server closing the stream once the session expires.

Needs: pip install -r Tests/e2e/requirements.txt, and a built binary (`swift build`), found at $TANDEM_BINARY or
.build/debug/tandem. Run: python3 -m pytest -q Tests/e2e/test_sse_external.py

Every wait is bounded: HTTP timeouts on every request, and the threads that read streams are daemons the tests
only ever wait on with a deadline. A stream the server fails to close ends at the latest when the fixture stops
the server.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

import httpx
import pytest
import sseclient
from httpx_sse import EventSource, ServerSentEvent, connect_sse

from tandem_e2e.nodes import REQUEST_TIMEOUT, Cluster, Node
from tandem_e2e.phone import NAME, PHONE, expect_input_started, expect_submitted, expect_valid, new_session_id
from tandem_e2e.sse import HEARTBEAT_SECONDS, PAIRING_CODE, StreamThread

TTL_SECONDS = 3
STOP_TIMEOUT = 5.0
# The server must close an expired session's stream within TTL + this many seconds of opening it.
EXPIRY_SLACK = 2.0

# At most 20 characters as people see them (the server's rule): a script tag, a quote, an ampersand, an emoji.
TRICKY_NAME = '<script>"&</script>😀'


# --------------------------------------------------------------------------------------------------------------
# The server


@pytest.fixture(scope="module")
def server() -> Iterator[Node]:
    with Cluster(stop_timeout=STOP_TIMEOUT) as cluster:
        yield cluster.tandem(
            "tandem", {"SESSION_TTL_SECONDS": str(TTL_SECONDS), "HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)}
        )


# --------------------------------------------------------------------------------------------------------------
# Stream readers running in background threads, each with a parser we did not write


class StreamReader(StreamThread):
    """GET /api/events read by a third-party parser; `events` holds that parser's own event objects."""

    @property
    def reader_cookie(self) -> str | None:
        """`name=value` of the reader-key cookie the server set, as a browser would send it back."""
        header = self.response_headers.get("set-cookie") if self.response_headers is not None else None
        return header.split(";", 1)[0] if header else None


Reader = TypeVar("Reader", bound=StreamReader)


class HttpxSSEReader(StreamReader):
    """httpx + httpx-sse: collects httpx_sse.ServerSentEvent objects, including the retry-only first block."""

    def _read(self, client: httpx.Client) -> bool:
        with connect_sse(client, "GET", self.url, params=self.params, headers=dict(self.request_headers)) as source:
            if not self._got_response(source.response):
                return True
            # httpx-sse yields nothing for comments; reading through this wrapper lets stop() take effect on any
            # chunk, heartbeats included, so a stopped reader drops the connection within a heartbeat period.
            stoppable = _StoppableResponse(source.response, self._stop)
            for sse in EventSource(stoppable).iter_sse():  # type: ignore[arg-type]
                self._add(sse)
            return not stoppable.stopped


class _StoppableResponse:
    """The two things httpx_sse.EventSource uses of a response (headers, iter_text), stopping on request."""

    def __init__(self, response: httpx.Response, stop: threading.Event) -> None:
        self._response = response
        self._stop = stop
        self.stopped = False
        self.headers = response.headers

    def iter_text(self) -> Any:
        for text in self._response.iter_text():
            yield text
            if self._stop.is_set():
                self.stopped = True
                return


class SSEClientReader(StreamReader):
    """httpx for the bytes, sseclient-py for the parsing; keeps a copy of the raw bytes to see comments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw = bytearray()

    def _read(self, client: httpx.Client) -> bool:
        with client.stream("GET", self.url, params=self.params, headers=dict(self.request_headers)) as response:
            if not self._got_response(response):
                return True
            stopped = False

            def chunks() -> Any:
                nonlocal stopped
                for chunk in response.iter_bytes():
                    with self._changed:
                        self.raw.extend(chunk)
                        self._changed.notify_all()
                    yield chunk
                    if self._stop.is_set():  # checked on every chunk, heartbeats included
                        stopped = True
                        return

            for event in sseclient.SSEClient(chunks()).events():
                self._add(event)
            return not stopped

    def raw_lines(self) -> list[str]:
        with self._changed:
            text = bytes(self.raw).decode("utf-8", errors="replace")
        return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    def wait_for_raw_line(self, line: str, timeout: float) -> bool:
        return self.wait_until(lambda: line in self.raw_lines(), timeout)


# --------------------------------------------------------------------------------------------------------------
# Helpers


def simplify(events: list[Any]) -> list[tuple[str, str, Any]]:
    """(event name, id, parsed JSON data) of each event, for either client's event type."""
    return [(e.event, e.id, json.loads(e.data)) for e in events]


def drop_retry_block(events: list[ServerSentEvent]) -> list[ServerSentEvent]:
    """The events a browser's EventSource would dispatch, after checking the stream opened with `retry: 2000`.

    httpx-sse 0.4.3 yields every block that ends in a blank line once any field was ever seen: the leading
    `retry: 2000` block comes out as a data-less event, and so does each `: heartbeat` comment block (carrying
    the sticky last event id). The WHATWG algorithm dispatches nothing when the data buffer is empty, so those
    are dropped here; that is the client's quirk, not the server's.
    """
    assert events, "the stream produced nothing"
    first = events[0]
    assert first.retry == 2000 and first.data == "", f"stream did not start with `retry: 2000`: {first!r}"
    return [e for e in events[1:] if e.data != ""]


def is_session_info(event: Any) -> bool:
    try:
        return json.loads(event.data).get("type") == "session-info"
    except (ValueError, AttributeError):
        return False


def has_id(event_id: str) -> Callable[[list[Any]], bool]:
    return lambda events: any(e.id == event_id and e.data for e in events)


def has_session_info(events: list[Any]) -> bool:
    return any(is_session_info(e) for e in events)


def check_session_info(event: Any, expected_id: str, opened_at_ms: int) -> None:
    assert event.event == "message", f"session-info must be an unnamed event, got event name {event.event!r}"
    assert event.id == expected_id, f"session-info id: expected {expected_id!r}, got {event.id!r}"
    data = json.loads(event.data)
    # The article's keys, plus `serverTime` (the server's clock, for a countdown that survives a resume).
    assert set(data) == {"expiryTime", "ttlMinutes", "type", "serverTime"}, f"session-info keys: {data!r}"
    assert isinstance(data["serverTime"], int) and data["serverTime"] <= data["expiryTime"], data
    assert data["type"] == "session-info"
    assert isinstance(data["expiryTime"], int) and not isinstance(data["expiryTime"], bool), data
    # The session was created at most a little before the stream opened, so it expires within about TTL from then.
    assert opened_at_ms - 5_000 <= data["expiryTime"] <= opened_at_ms + (TTL_SECONDS + 2) * 1000, (
        f"expiryTime {data['expiryTime']} is not about {TTL_SECONDS}s after {opened_at_ms}"
    )
    assert data["ttlMinutes"] == pytest.approx(TTL_SECONDS / 60), data


def opened(reader: Reader) -> Reader:
    """Starts the reader and checks the response (status and headers) and that session-info came first."""
    reader.start()
    reader.wait_for_response()
    check_stream_headers(reader)
    assert reader.wait_for(has_session_info), f"no session-info: {reader.snapshot()!r} (error {reader.error!r})"
    return reader


def check_stream_headers(reader: StreamReader) -> None:
    assert reader.status == 200, f"GET /api/events: status {reader.status}, body {reader.body!r}"
    headers = reader.response_headers
    assert headers is not None
    assert headers.get("content-type", "").split(";")[0].strip() == "text/event-stream", headers
    assert headers.get("cache-control") == "no-cache", headers
    assert headers.get("x-accel-buffering") == "no", headers


def submit(client: httpx.Client, session_id: str, name: str, phone: str) -> None:
    body = expect_submitted(client, session_id, name, phone)
    assert isinstance(body.get("message"), str), body


def now_ms() -> int:
    return int(time.time() * 1000)


def finish(reader: StreamReader) -> None:
    """Lets the reader run until the server ends the stream (the session expires), bounded in time: if the
    server keeps it open past TTL + slack, the reader is stopped and what it has is checked anyway (the expiry
    test is the one that fails for that)."""
    if not reader.wait_ended(TTL_SECONDS + EXPIRY_SLACK + 0.5):
        reader.stop()
        reader.wait_ended(HEARTBEAT_SECONDS + 2.0)
    assert reader.error is None, f"stream reader failed: {reader.error!r}"


# --------------------------------------------------------------------------------------------------------------
# Tests


def test_httpx_sse_full_flow(server: Node) -> None:
    session_id = new_session_id()
    opened_at_ms = now_ms()
    reader = opened(HttpxSSEReader(server.base_url, session_id))

    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT) as client:
        expect_valid(client, session_id)
        assert reader.wait_for(has_id("1")), f"no `connected`: {reader.snapshot()!r}"
        expect_input_started(client, session_id)
        assert reader.wait_for(has_id("2")), f"no `input-started`: {reader.snapshot()!r}"
        submit(client, session_id, NAME, PHONE)
        assert reader.wait_for(has_id("3")), f"no `complete`: {reader.snapshot()!r}"

    finish(reader)  # everything the stream carried until it closed, so "exactly" includes "nothing after"
    events = drop_retry_block(reader.snapshot())
    check_session_info(events[0], "0", opened_at_ms)
    assert simplify(events[1:]) == [
        ("connected", "1", {"code": PAIRING_CODE}),
        ("input-started", "2", {}),
        ("complete", "3", {"name": NAME, "phone": PHONE}),
    ]


def test_sseclient_py_flow_with_tricky_name_and_heartbeat(server: Node) -> None:
    session_id = new_session_id()
    opened_at_ms = now_ms()
    reader = opened(SSEClientReader(server.base_url, session_id))

    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT) as client:
        expect_valid(client, session_id)
        expect_input_started(client, session_id)
        submit(client, session_id, TRICKY_NAME, PHONE)
    assert reader.wait_for(has_id("3")), f"no `complete`: {[vars(e) for e in reader.snapshot()]!r}"

    # sseclient-py drops comments, so the heartbeat is looked for in the raw bytes of the same connection.
    assert reader.wait_for_raw_line(": heartbeat", HEARTBEAT_SECONDS + 2.0), (
        f"no `: heartbeat` comment within {HEARTBEAT_SECONDS + 2.0}s; raw stream: {bytes(reader.raw)!r}"
    )
    finish(reader)

    assert reader.raw_lines()[:2] == ["retry: 2000", ""], f"stream start: {bytes(reader.raw[:80])!r}"
    events = reader.snapshot()
    check_session_info(events[0], "0", opened_at_ms)
    assert simplify(events[1:]) == [
        ("connected", "1", {"code": PAIRING_CODE}),
        ("input-started", "2", {}),
        ("complete", "3", {"name": TRICKY_NAME, "phone": PHONE}),
    ]
    complete = json.loads(events[-1].data)
    assert complete["name"] == TRICKY_NAME  # exact round trip: no HTML escaping, no mangled emoji


def test_resume_with_last_event_id(server: Node) -> None:
    session_id = new_session_id()
    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT) as client:
        # First connection: up to input-started, then dropped by us.
        first_reader = opened(HttpxSSEReader(server.base_url, session_id))
        expect_valid(client, session_id)
        expect_input_started(client, session_id)
        assert first_reader.wait_for(has_id("2")), f"no `input-started`: {first_reader.snapshot()!r}"
        first_reader.stop()
        assert first_reader.wait_ended(HEARTBEAT_SECONDS + 2.0), "could not drop the first connection"
        assert first_reader.error is None, f"first connection failed: {first_reader.error!r}"
        first = drop_retry_block(first_reader.snapshot())
        assert [(e.event, e.id) for e in first] == [("message", "0"), ("connected", "1"), ("input-started", "2")]

        # Second connection resumes after id 2, with the reader-key cookie the first one got, as a browser does.
        cookie = first_reader.reader_cookie
        assert cookie is not None and cookie.startswith(f"tandem_reader_{session_id}="), first_reader.response_headers
        opened_at_ms = now_ms()
        reader = opened(HttpxSSEReader(server.base_url, session_id, last_event_id="2", cookie=cookie))
        submit(client, session_id, NAME, PHONE)
        assert reader.wait_for(has_id("3")), f"no `complete` after resume: {reader.snapshot()!r}"

    finish(reader)  # until the stream closes, so a duplicate sent later would still be seen
    events = drop_retry_block(reader.snapshot())
    check_session_info(events[0], "2", opened_at_ms)
    assert simplify(events[1:]) == [("complete", "3", {"name": NAME, "phone": PHONE})]


def test_stream_closes_on_expiry_and_resume_is_404(server: Node) -> None:
    session_id = new_session_id()
    reader = opened(HttpxSSEReader(server.base_url, session_id))
    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT) as client:
        expect_valid(client, session_id)
    assert reader.wait_for(has_id("1")), f"no `connected`: {reader.snapshot()!r}"

    limit = TTL_SECONDS + EXPIRY_SLACK
    closed = reader.wait_ended(limit + 0.5)
    assert closed, f"server did not close the stream within {limit}s of the session's TTL ({TTL_SECONDS}s)"
    assert reader.error is None, f"stream ended with an error instead of a clean close: {reader.error!r}"
    assert reader.closed_by_server
    assert reader.opened_at is not None and reader.ended_at is not None
    assert reader.ended_at - reader.opened_at <= limit, f"closed after {reader.ended_at - reader.opened_at:.2f}s"

    # Reconnecting after expiry, as EventSource would with the last id it saw.
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        with client.stream("GET", f"{server.base_url}/api/events", params={"session": session_id},
                           headers={"Last-Event-ID": "1", "Accept": "text/event-stream"}) as response:
            assert response.status_code == 404, (
                f"reconnect after expiry: expected 404, got {response.status_code} {dict(response.headers)!r}"
            )
            body = json.loads(response.read())
    assert body["code"] == "session_not_found", body
