"""Issue 15, items 3-5, on two nodes sharing one Redis, through the API (the pages are tested in Chromium by
test_pairing_browser.py): the phone's own channel on one node hears what happens on the other, the PC hears the
phone leave and come back, two phones racing on two nodes get one claim, and a SIGTERM'd PC node is no departure.

Needs what test_multinode.py needs. Every process is stopped by its PID when the test ends.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx

from tandem_e2e.nodes import REQUEST_TIMEOUT, Node
from tandem_e2e.phone import input_started, new_session_id, submit, validate
from tandem_e2e.sse import HEARTBEAT_SECONDS, PhoneStream, Stream, flow_events
from test_multinode import RedisCluster, cluster  # noqa: F401 (the fixture)

GRACE = 2.0
SETTINGS = {
    "PAIRING_GRACE_SECONDS": "2", "SSE_RETRY_MILLISECONDS": "1000", "SESSION_TTL_SECONDS": "60",
    "HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),  # a closed test stream is noticed at its next heartbeat
}


def two_nodes(cluster: RedisCluster) -> tuple[Node, Node]:
    redis = cluster.redis()
    settings = {"BROKER": "redis", "REDIS_URL": redis.url, **SETTINGS}
    return cluster.tandem("A", settings), cluster.tandem("B", settings)


def paired(pc_node: Node, phone_node: Node) -> tuple[str, Stream, PhoneStream]:
    """A session opened by the PC's stream on `pc_node`, claimed by a phone through `phone_node`, whose own channel
    is open there."""
    session_id = new_session_id()
    pc = Stream(pc_node, session_id).start()
    pc.wait_opened()
    assert validate(phone_node, session_id).status_code == 200
    phone = PhoneStream(phone_node, session_id).start()
    phone.wait_opened()
    assert phone.status == 200, phone.describe()
    return session_id, pc, phone


def names(stream: Stream) -> list[str]:
    return [name for name, _, _ in flow_events(stream.snapshot())]


def test_the_phone_on_one_node_hears_at_once_that_the_pc_left_the_other(cluster: RedisCluster) -> None:
    a, b = two_nodes(cluster)
    session_id, pc, phone = paired(a, b)
    pc.close()
    closed = time.monotonic()
    assert phone.wait_for(lambda events: any(e.name == "pc-left" for e in events), timeout=GRACE + 3), phone.describe()
    told = time.monotonic() - closed
    assert told < GRACE + 1.0, f"the phone was told {told:.2f} s after the PC left (grace {GRACE} s)"
    answer = submit(a, session_id)
    assert answer.status_code == 404 and answer.json()["code"] == "session_cancelled", answer.text
    phone.close()


def test_the_pc_hears_the_phone_leave_and_come_back_across_nodes(cluster: RedisCluster) -> None:
    a, b = two_nodes(cluster)
    session_id, pc, phone = paired(a, b)
    phone.close()
    assert pc.wait_for(lambda events: any(e.name == "phone-left" for e in events), timeout=GRACE + 3), pc.describe()
    back = PhoneStream(a, session_id).start()  # the phone comes back, through the other node
    back.wait_opened()
    assert pc.wait_for(lambda events: any(e.name == "phone-returned" for e in events), timeout=5), pc.describe()
    assert input_started(b, session_id).status_code == 200
    assert pc.wait_for(lambda events: any(e.name == "input-started" for e in events)), pc.describe()
    assert names(pc) == ["connected", "phone-left", "phone-returned", "input-started"], pc.describe()
    back.close()
    pc.close()


def test_two_phones_racing_on_two_nodes_get_one_claim(cluster: RedisCluster) -> None:
    a, b = two_nodes(cluster)
    for _ in range(10):
        session_id = new_session_id()
        pc = Stream(a, session_id).start()
        pc.wait_opened()
        answers: list[int] = []
        barrier = threading.Barrier(2)

        def phone(node: Node) -> None:
            with httpx.Client(base_url=node.base_url, timeout=REQUEST_TIMEOUT) as client:
                barrier.wait()
                answers.append(client.get("/api/validate-session", params={"session": session_id}).status_code)

        threads = [threading.Thread(target=phone, args=(node,)) for node in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers) == [200, 409], answers
        assert pc.wait_for(lambda events: any(e.name == "connected" for e in events)), pc.describe()
        time.sleep(0.2)
        assert names(pc) == ["connected"], pc.describe()
        pc.close()


def test_a_sigtermed_pc_node_is_no_departure_for_the_phone(cluster: RedisCluster) -> None:
    a, b = two_nodes(cluster)
    session_id, pc, phone = paired(a, b)
    a.process.stop(signal.SIGTERM)
    assert pc.wait_ended(5.0), "A's stream did not end when A drained"
    # The browser comes back to the other node, as EventSource would through a balancer, with its Last-Event-ID.
    resumed = Stream(b, session_id, last_event_id="1", cookie=pc.reader_cookie()).start()
    resumed.wait_opened()
    time.sleep(GRACE + 1.5)  # past the grace and its review
    assert not any(e.name == "pc-left" for e in phone.snapshot()), phone.describe()
    assert submit(b, session_id).status_code == 200
    assert phone.wait_for(lambda events: any(e.name == "completed" for e in events)), phone.describe()
    assert resumed.wait_for(lambda events: any(e.name == "complete" for e in events)), resumed.describe()
    phone.close()
    resumed.close()
