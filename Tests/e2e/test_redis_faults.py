"""End-to-end checks of Tandem with a Redis that misbehaves without going away: it refuses to store (out of memory),
it loses every session (emptied under a live stream), or it holds keys Tandem did not write (corrupt sessions,
absurd log entries).

Each test starts its own `redis-server` on a free loopback port and its own Tandem node (CONFIG SET, FLUSHALL and
CLIENT KILL would disturb anything else sharing the server), and stops them by PID when it ends, passed or failed.

Needs: pip install -r Tests/e2e/requirements.txt, `redis-server` on PATH, and a built binary ($TANDEM_BINARY or
.build/debug/tandem). Run: python3 -m pytest -q Tests/e2e/test_redis_faults.py
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from test_multinode import RedisCluster

from tandem_e2e.nodes import Node
from tandem_e2e.phone import expect_input_started, expect_valid, input_started, new_session_id, submit, validate
from tandem_e2e.processes import poll
from tandem_e2e.redis_server import RedisServer
from tandem_e2e.sse import HEARTBEAT_SECONDS, Stream

# How long a node may take to notice Redis again, and how long readiness may lag a recovery (probe interval 1 s).
RECOVERY_WAIT = 5.0


class FaultCluster(RedisCluster):
    """test_multinode's nodes, with a TTL long enough that no session expires during a fault."""

    def node(self, name: str, redis: RedisServer, ttl_seconds: int = 120) -> Node:
        return super().node(name, redis, ttl_seconds)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FaultCluster]:
    with FaultCluster(tmp_path) as running:
        yield running


def get(node: Node, path: str) -> httpx.Response:
    with node.client() as client:
        return client.get(path)


def create_session(node: Node) -> httpx.Response:
    with node.client() as client:
        return client.post("/api/sessions")


def metric(node: Node, line_start: str) -> float:
    """The value of the first /metrics sample whose line starts with `line_start`; 0 when there is none."""
    for line in get(node, "/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_redis_out_of_memory_is_503_not_ready_and_recovers(cluster: FaultCluster) -> None:
    redis = cluster.redis()
    node = cluster.node("A", redis)
    held = new_session_id()
    stream = Stream(node, held).start()
    stream.wait_opened()

    assert redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction") == "OK"
    assert redis.command("CONFIG", "SET", "maxmemory", "1") == "OK"
    try:
        answers = {
            "POST /api/sessions": create_session(node),
            "GET /api/validate-session": validate(node, held),
            "POST /api/input-started": input_started(node, held),
            "POST /api/submit": submit(node, held),
        }
        for what, response in answers.items():
            assert response.status_code == 503, f"{what} with Redis out of memory: {response.status_code} {response.text}\n{node.log()}"
            assert response.json()["code"] == "service_unavailable", f"{what}: {response.text}"

        ready = get(node, "/readyz")
        assert ready.status_code == 503, f"/readyz while Redis refuses to store: {ready.status_code} {ready.text}"
        assert ready.json()["ready"] is False and "OOM" in ready.json()["reason"], ready.text
        live = get(node, "/healthz")
        assert live.status_code == 200 and live.json()["status"] == "ok", f"/healthz (liveness) must stay ok: {live.text}"
        assert metric(node, 'tandem_broker_refusals_total{kind="oom"}') >= 4, get(node, "/metrics").text
        assert node.process.count("Redis refuses to store") == 1, node.log()
        # Still refusing after the probe interval: the probe write is refused too.
        time.sleep(1.5)
        assert get(node, "/readyz").status_code == 503
        assert redis.command("HGET", f"tandem:{{{held}}}:session", "status") == "waiting", "a refused call changed the session"
        assert redis.command("EXISTS", f"tandem:{{{held}}}:log") == 0
    finally:
        redis.command("CONFIG", "SET", "maxmemory", "0")

    assert poll(lambda: get(node, "/readyz").status_code == 200, RECOVERY_WAIT, 0.2), (
        f"/readyz did not recover within {RECOVERY_WAIT}s of Redis storing again: {get(node, '/readyz').text}\n{node.log()}"
    )
    assert create_session(node).status_code == 201
    expect_valid(node, held)
    expect_input_started(node, held)
    assert stream.wait_for_id("2"), stream.describe()
    stream.close()


def test_a_stream_whose_session_redis_lost_ends_with_an_expired_event(cluster: FaultCluster) -> None:
    redis = cluster.redis()
    node = cluster.node("A", redis)
    session_id = new_session_id()
    stream = Stream(node, session_id).start()
    stream.wait_opened()
    expect_valid(node, session_id)
    assert stream.wait_for_id("1"), stream.describe()

    # Redis emptied, as a restart without persistence leaves it; the node's connections drop with it.
    assert redis.command("FLUSHALL") == "OK"
    redis.command("CLIENT", "KILL", "TYPE", "normal")
    lost_at = time.monotonic()

    assert stream.wait_for(lambda events: any(e.name == "expired" for e in events), 5.0), (
        f"no expired event within 5 s of Redis losing the session:\n{stream.describe()}\n{node.log()}"
    )
    assert stream.wait_ended(3.0), f"the stream did not end after its expired event:\n{stream.describe()}"
    assert stream.closed_by_server and stream.error is None, (stream.closed_by_server, stream.error)
    expired = next(e for e in stream.snapshot() if e.name == "expired")
    assert expired.json() == {"type": "expired"}, expired
    # No id of its own: the browser's Last-Event-ID stays the last real event's.
    at = stream.lines.index("event: expired")
    assert stream.lines[at + 1:at + 3] == ['data: {"type":"expired"}', ""], stream.describe()
    assert expired.received_at - lost_at < 5.0
    # A reconnect, as EventSource would make without the page's handler, is refused: the session is gone.
    again = Stream(node, session_id, last_event_id="1", cookie=stream.reader_cookie()).start()
    again.wait_for_response()
    assert again.status == 404, (again.status, again.body)


def test_a_corrupt_session_is_not_found_and_unchanged(cluster: FaultCluster) -> None:
    redis = cluster.redis()
    node = cluster.node("A", redis)
    session_id = new_session_id()
    stream = Stream(node, session_id).start()
    stream.wait_opened()
    session_key, log_key = f"tandem:{{{session_id}}}:session", f"tandem:{{{session_id}}}:log"
    redis.command("SET", log_key, "not a list")  # the log of the wrong type
    before = redis.command("HGETALL", session_key)

    response = submit(node, session_id)
    assert response.status_code == 404 and response.json()["code"] == "session_not_found", f"{response.status_code} {response.text}"
    response = validate(node, session_id)
    assert response.status_code == 404 and response.json()["valid"] is False, f"{response.status_code} {response.text}"
    assert redis.command("HGETALL", session_key) == before, "a refused publish changed the record"
    assert redis.command("GET", log_key) == "not a list"
    assert node.process.wait_for_line("corrupt", 2.0), node.log()

    # Status garbage and no lastEventID: the same.
    redis.command("DEL", log_key)
    redis.command("HSET", session_key, "status", "garbage")
    redis.command("HDEL", session_key, "lastEventID")
    before = redis.command("HGETALL", session_key)
    response = input_started(node, session_id)
    assert response.status_code == 404, f"{response.status_code} {response.text}"
    assert redis.command("HGETALL", session_key) == before
    assert redis.command("EXISTS", log_key) == 0
    assert all(e.name == "message" for e in stream.snapshot()), stream.describe()
    stream.close()


def test_an_absurd_log_entry_is_never_delivered_and_the_node_stays_up(cluster: FaultCluster) -> None:
    redis = cluster.redis()
    node = cluster.node("A", redis)
    session_id = new_session_id()
    stream = Stream(node, session_id).start()
    stream.wait_opened()
    absurd = '{"id":18446744073709551615,"event":"complete","name":"x","phone":"1","t":"1"}'
    redis.command("RPUSH", f"tandem:{{{session_id}}}:log", absurd)
    redis.command("PUBLISH", f"tandem:{{{session_id}}}:events", absurd)
    # A reconnect replays the log; the node also redelivers it after losing Redis.
    replay = Stream(node, session_id, last_event_id="0", cookie=stream.reader_cookie()).start()
    replay.wait_opened()
    redis.command("CLIENT", "KILL", "TYPE", "normal")
    assert poll(lambda: validate(node, session_id).status_code == 200, RECOVERY_WAIT, 0.2), node.log()
    for reader in (stream, replay):
        assert reader.wait_for_id("1"), reader.describe()
    time.sleep(HEARTBEAT_SECONDS + 0.5)  # anything else would have arrived by now
    for reader in (stream, replay):
        named = [(e.name, e.id) for e in reader.snapshot() if e.name != "message"]
        assert named == [("connected", "1")], reader.describe()
    assert node.process.running(), node.log()
    stream.close()
    replay.close()


def test_a_node_that_writes_nothing_also_stops_being_ready_while_redis_refuses(cluster: FaultCluster) -> None:
    """Found by the attack pass: only the node whose own write was refused went not-ready, so a balancer kept sending
    traffic to the others, which would 503. Health now asks Redis with a probe write now and then."""
    redis = cluster.redis()
    node = cluster.node("idle", redis)
    assert get(node, "/readyz").status_code == 200
    assert redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction") == "OK"
    assert redis.command("CONFIG", "SET", "maxmemory", "1") == "OK"
    try:
        assert poll(lambda: get(node, "/readyz").status_code == 503, 5.0, 0.3), get(node, "/readyz").text
        assert "OOM" in get(node, "/readyz").json()["reason"]
    finally:
        redis.command("CONFIG", "SET", "maxmemory", "0")
    assert poll(lambda: get(node, "/readyz").status_code == 200, RECOVERY_WAIT, 0.2), get(node, "/readyz").text
