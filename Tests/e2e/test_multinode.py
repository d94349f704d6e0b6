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

import re
import signal
import time
import warnings
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tandem_e2e.nodes import Cluster, Node
from tandem_e2e.phone import (
    NAME,
    PHONE,
    expect_input_started,
    expect_submitted,
    expect_valid,
    input_started,
    new_session_id,
    submit,
    validate,
)
from tandem_e2e.processes import poll
from tandem_e2e.redis_server import RedisServer
from tandem_e2e.sse import HEARTBEAT_SECONDS, PAIRING_CODE, Stream, flow_events, full_flow, is_session_info

# How long a node may take to notice that a stream's client went away and unsubscribe.
UNSUBSCRIBE_WAIT = 5.0
# Recovery after Redis comes back (backoff tops out at 5 s).
RECOVERY_WAIT = 15.0

UNREACHABLE = "Redis unreachable"
REACHABLE_AGAIN = "Redis reachable again"

FULL_FLOW = full_flow()


# --------------------------------------------------------------------------------------------------------------
# Redis and Tandem nodes


class RedisCluster(Cluster):
    """Redis servers and the Tandem nodes of one test, every node on the Redis broker."""

    def node(self, name: str, redis: RedisServer, ttl_seconds: int) -> Node:
        return self.tandem(name, {
            "BROKER": "redis",
            "REDIS_URL": redis.url,
            "SESSION_TTL_SECONDS": str(ttl_seconds),
            "HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        })


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path) as running:
        yield running


def channel_of(session_id: str) -> str:
    return f"tandem:{{{session_id}}}:events"


# --------------------------------------------------------------------------------------------------------------
# Requests


def health(node: Node) -> httpx.Response:
    with node.client() as client:
        return client.get("/healthz")


def expect_flow(node: Node, session_id: str) -> None:
    """validate-session, input-started and submit on `node`, each answered 200 with success."""
    expect_valid(node, session_id)
    expect_input_started(node, session_id)
    expect_submitted(node, session_id)


# --------------------------------------------------------------------------------------------------------------
# Tests


def test_two_nodes_share_events_sessions_and_expiry(cluster: RedisCluster) -> None:
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
    expect_input_started(b, session_id)
    assert stream.wait_for_id("2"), f"`input-started` from B did not reach A: {stream.snapshot()!r}"
    expect_submitted(b, session_id)
    assert stream.wait_for_id("3"), f"`complete` from B did not reach A: {stream.snapshot()!r}"

    # Both nodes know the session, and that it is completed.
    for node in (a, b):
        answer = validate(node, session_id)
        assert answer.status_code == 409 and answer.json()["code"] == "already_submitted", answer.text

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


def test_subscriptions_follow_streams(cluster: RedisCluster) -> None:
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
        assert stream.error is None, f"{stream.session_id}@{stream.target.name}: {stream.error!r}"


def test_redis_outage_is_503_then_recovers(cluster: RedisCluster) -> None:
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


def test_resume_on_other_node_with_last_event_id(cluster: RedisCluster) -> None:
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
    assert flow_events(first.snapshot()) == [("connected", "1", {"code": PAIRING_CODE})]

    expect_input_started(b, session_id)
    expect_submitted(b, session_id)

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


def test_sigterm_drains_a_node_mid_flow_and_nothing_is_lost(cluster: RedisCluster) -> None:
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
    expect_input_started(b, session_id)
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
    expect_submitted(b, session_id)
    resumed = Stream(b, session_id, last_event_id="2", cookie=stream.reader_cookie()).start()
    resumed.wait_opened()
    assert resumed.wait_for_id("3"), f"resume on B after A drained: {resumed.snapshot()!r}\n{b.log()}"
    time.sleep(HEARTBEAT_SECONDS + 1.0)  # a duplicate would arrive by now
    resumed.close()
    assert flow_events(stream.snapshot()) == FULL_FLOW[:2], stream.describe()
    assert flow_events(resumed.snapshot()) == FULL_FLOW[2:], resumed.describe()


def test_a_second_reader_without_the_openers_key_gets_nothing_on_any_node(cluster: RedisCluster) -> None:
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
    tokens = {seed_style: None, server_made: made.json()["token"]}
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
        expect_valid(b, session_id, token=tokens[session_id])
        expect_submitted(a, session_id)

    assert opener.wait_for_id("2"), opener.describe()
    assert key_opener.wait_for_id("2"), key_opener.describe()
    for stream in (opener, key_opener):
        stream.close()
        assert flow_events(stream.snapshot()) == [
            ("connected", "1", {"code": PAIRING_CODE}), ("complete", "2", {"name": NAME, "phone": PHONE}),
        ]


def test_a_phone_key_cookie_lives_as_long_as_the_session_whichever_node_answers(cluster: RedisCluster) -> None:
    """Nodes of one deployment may have different TTLs (while the setting rolls out): a phone that claims a 600 s
    session through a node set to 60 s keeps its key for the session's 600 s, or its next step after a minute would be
    refused as another device's (found by review)."""
    redis = cluster.redis()
    a = cluster.node("A", redis, ttl_seconds=600)
    b = cluster.node("B", redis, ttl_seconds=60)
    session_id = new_session_id()
    stream = Stream(a, session_id).start()  # the PC opens the session on A: it lives 600 s
    stream.wait_opened()
    with b.client() as client:
        answer = client.get("/api/validate-session", params={"session": session_id})
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"tandem_phone_{session_id}="), cookie
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))
    ttl_ms = redis.command("PTTL", f"tandem:{{{session_id}}}:session")
    assert ttl_ms > 500_000, ttl_ms
    assert max_age * 1000 >= ttl_ms and max_age <= 600, f"the phone's key cookie {cookie!r} against the session's PTTL {ttl_ms} ms"
    stream.close()
