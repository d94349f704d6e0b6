"""Tandem on a real Redis Cluster (`broker: redis-cluster`): six `redis-server --cluster-enabled yes`, three masters
and three replicas, started for each test by scripts/redis-cluster.sh; two Tandem nodes, the PCs' streams on A and
the phones' requests on B.

- 300 flows whose sessions land on all three masters (each master's key count is checked): every flow completes,
  each event once, in order.
- `kill -9` of a master in the middle of 300 flows, with `redis.waitReplicas` 1: its replica is promoted, the streams
  on A resubscribe there, and every flow completes with nothing lost or duplicated; no Tandem node is restarted;
  `/readyz` is 503 at most while a slot has no master and 200 again after.
- Bad data on a shard channel and a key of the wrong type: the node logs it and keeps serving everyone else.

Each phone step is retried on 503 (with an Idempotency-Key, so a step stored before its 503 is answered as it was):
that is what the phone page does, and it is why a 503 loses nothing.
"""

from __future__ import annotations

import concurrent.futures
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from tandem_e2e.nodes import Cluster, Node
from tandem_e2e.phone import NAME, PHONE, new_session_id
from tandem_e2e.redis_cluster import RedisClusterServers
from tandem_e2e.sse import HEARTBEAT_SECONDS, Stream, flow_events, full_flow

# One worker runs this whole file when the tests run in parallel (scripts/test.sh): one six-node cluster at a time
# on the machine, not one per worker.
pytestmark = pytest.mark.xdist_group("redis-cluster")

FULL_FLOW = full_flow()
FLOWS = 300
# How long a phone keeps retrying a step answered 503: a failover here takes a few seconds (node timeout 1 s).
RETRY_FOR = 30.0


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(tmp_path).start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path) as running:
        yield running


def start_nodes(nodes: Cluster, servers: RedisClusterServers, **extra: str) -> tuple[Node, Node]:
    settings = {
        "BROKER": "redis-cluster", "REDIS_CLUSTER_NODES": servers.seeds, "SESSION_TTL_SECONDS": "300",
        "HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS), "LIMITS_SESSIONS_PER_MINUTE": "0", "LIMITS_REQUESTS_PER_MINUTE": "0",
        **extra,
    }
    return nodes.tandem("A", settings), nodes.tandem("B", settings)


def phone_step(client: httpx.Client, method: str, path: str, *, body: dict | None = None) -> httpx.Response:
    """One phone step, retried on 503 for up to RETRY_FOR seconds with the same Idempotency-Key."""
    key = secrets.token_hex(8)
    deadline = time.monotonic() + RETRY_FOR
    while True:
        try:
            response = client.request(method, path, json=body, headers={"Idempotency-Key": key}, timeout=10.0)
            if response.status_code != 503 or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def one_flow(a: Node, b: Node, session_id: str) -> tuple[list, str]:
    """A PC stream on A, the phone on B; returns the stream's events and, if a step failed, why."""
    # While the broker is unavailable a stream is answered 200 with a comment and a retry hint, and closed: the
    # browser's EventSource reconnects after the hint, and so does this client.
    # Like a browser, it sends back the reader-key cookie a first answer set (the session was opened before the
    # broker failed the rest of the request).
    deadline = time.monotonic() + RETRY_FOR
    cookie: str | None = None
    while True:
        stream = Stream(a, session_id, cookie=cookie).start()
        # As long as the steps' retries: a CI run saw the whole cluster stall 5 s mid-reshard (both nodes answered
        # nothing meanwhile), and a stream's opening waits on several Redis calls in a row.
        stream.wait_response(RETRY_FOR)
        cookie = stream.reader_cookie() or cookie
        if stream.wait_until(lambda: bool(stream.events) or stream.ended.is_set(), RETRY_FOR) and stream.events:
            break
        stream.stop()
        if time.monotonic() > deadline:
            return stream.snapshot(), f"no stream opened; status {stream.status}, lines {stream.lines[:4]!r}"
        time.sleep(0.5)
    try:
        with httpx.Client(base_url=b.base_url) as phone:
            answer = phone_step(phone, "GET", f"/api/validate-session?session={session_id}")
            if answer.status_code != 200:
                return stream.snapshot(), f"validate {answer.status_code} {answer.text}"
            answer = phone_step(phone, "POST", "/api/input-started", body={"sessionId": session_id})
            if answer.status_code != 200:
                return stream.snapshot(), f"input-started {answer.status_code} {answer.text}"
            answer = phone_step(phone, "POST", "/api/submit", body={"sessionId": session_id, "name": NAME, "phone": PHONE})
            if answer.status_code != 200:
                return stream.snapshot(), f"submit {answer.status_code} {answer.text}"
        if not stream.wait_for_id("3", timeout=RETRY_FOR):
            return stream.snapshot(), "complete never reached the stream"
        time.sleep(0.3)  # a duplicate would arrive by now
        return stream.snapshot(), ""
    finally:
        stream.stop()


def run_flows(a: Node, b: Node, count: int, midway: Callable[[], None] | None = None) -> dict[str, tuple[list, str]]:
    ids = [new_session_id("clu") for _ in range(count)]
    results: dict[str, tuple[list, str]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        futures = {pool.submit(one_flow, a, b, session_id): session_id for session_id in ids}
        # Midway: once a third of the flows are done, the rest in flight or waiting.
        for done, future in enumerate(concurrent.futures.as_completed(futures, timeout=600)):
            if midway is not None and done == count // 3:
                midway()
            try:
                results[futures[future]] = future.result()
            except Exception as error:  # noqa: BLE001 - reported with the others
                results[futures[future]] = ([], f"{type(error).__name__}: {error} at {time.monotonic():.1f}")
    return results


def check_every_flow(results: dict[str, tuple[list, str]], a: Node, b: Node) -> None:
    for node in (a, b):
        Path(f"/tmp/tandem-cluster-{node.name}.log").write_text(node.process.tail(1_000_000))
    failed = {session_id: why for session_id, (_, why) in results.items() if why}
    assert not failed, f"{len(failed)} flows failed, e.g. {list(failed.items())[:5]}\nA: {a.log()[-3000:]}\nB: {b.log()[-3000:]}"
    wrong = {session_id: flow_events(events) for session_id, (events, _) in results.items() if flow_events(events) != FULL_FLOW}
    assert not wrong, f"{len(wrong)} streams did not get each event once, in order, e.g. {list(wrong.items())[:3]}"


def test_300_flows_across_three_masters_each_event_once_in_order(redis_cluster: RedisClusterServers, nodes: Cluster) -> None:
    a, b = start_nodes(nodes, redis_cluster)
    before = redis_cluster.key_counts()
    results = run_flows(a, b, FLOWS)
    check_every_flow(results, a, b)
    after = redis_cluster.key_counts()
    print(f"keys per master before {before}, after {after}")
    assert len(after) == 3
    # Every master holds sessions: each holds at least a sixth of them (about a third each, by hash).
    for port, keys in after.items():
        assert keys - before.get(port, 0) >= FLOWS // 6, f"master {port} got too few of the sessions: {after}"
    # Sharded Pub/Sub: no node subscribed a global channel.
    for port in redis_cluster.masters():
        assert redis_cluster.command(port, "PUBSUB", "CHANNELS") == [], port


def test_a_master_killed_mid_flow_loses_nothing_acknowledged(redis_cluster: RedisClusterServers, nodes: Cluster) -> None:
    a, b = start_nodes(nodes, redis_cluster, REDIS_WAIT_REPLICAS="1")
    masters = redis_cluster.masters()
    victim = masters[0]
    readiness: list[tuple[float, int]] = []
    stop_watching = threading.Event()

    def watch_readiness() -> None:
        with httpx.Client(base_url=a.base_url) as client:
            while not stop_watching.is_set():
                try:
                    readiness.append((time.monotonic(), client.get("/readyz", timeout=2.0).status_code))
                except httpx.TransportError:
                    readiness.append((time.monotonic(), 0))
                time.sleep(0.1)

    watcher = threading.Thread(target=watch_readiness, daemon=True)
    watcher.start()
    killed_at: list[float] = []

    def kill_a_master() -> None:
        redis_cluster.kill(victim)
        killed_at.append(time.monotonic())
        print(f"killed master {victim} at {killed_at[0]:.1f}")
        # Its replica takes over; the dead node is started again (as a supervisor would) and rejoins as the new
        # master's replica, so its shard can acknowledge events again. Until then its events are refused (503):
        # with waitReplicas 1 nothing is acknowledged that one replica does not have.
        def bring_back() -> None:
            if redis_cluster.wait_whole(3, without=victim):
                redis_cluster.restart(victim)
        threading.Thread(target=bring_back, daemon=True).start()

    results = run_flows(a, b, FLOWS, midway=kill_a_master)
    assert redis_cluster.wait_whole(3, without=victim), f"the cluster did not promote a replica of {victim}"
    assert redis_cluster.wait_replicated(), "the killed master did not rejoin as a replica"
    stop_watching.set()
    watcher.join(5)
    check_every_flow(results, a, b)
    assert victim not in redis_cluster.masters()
    # Both nodes serve again without a restart, and say so.
    for node in (a, b):
        assert node.process.process.poll() is None, f"node {node.name} exited\n{node.log()}"
        assert httpx.get(f"{node.base_url}/readyz", timeout=5.0).status_code == 200, node.log()[-2000:]
    not_ready = [at for at, status in readiness if status != 200]
    assert all(at >= killed_at[0] for at in not_ready), "not ready before the master was killed"
    # 503 only around the failover: the promotion takes seconds here, not the whole run.
    if not_ready:
        assert max(not_ready) - killed_at[0] < 20.0, f"not ready for {max(not_ready) - killed_at[0]:.1f} s"


def test_slots_resharded_during_flows_lose_nothing(redis_cluster: RedisClusterServers, nodes: Cluster) -> None:
    """`redis-cli --cluster reshard` moves 2,000 slots (and their sessions' keys) from one master to another while
    flows run: commands follow ASK and MOVED (and TRYAGAIN while a script's keys are split), the streams' shard
    channels are dropped by the old owner and subscribed again at the new one, and the log fills what was missed."""
    a, b = start_nodes(nodes, redis_cluster)
    source, target = redis_cluster.masters()[:2]
    before = redis_cluster.slot_counts()
    moves: list[subprocess.CompletedProcess] = []

    timing: dict[str, float] = {}

    def move() -> None:
        timing["reshard started"] = time.monotonic()
        moves.append(redis_cluster.reshard(source, target, 2000))
        timing["reshard ended"] = time.monotonic()

    def reshard() -> None:
        threading.Thread(target=move, daemon=True).start()

    results = run_flows(a, b, 200, midway=reshard)
    timing["flows ended"] = time.monotonic()
    deadline = time.monotonic() + 120
    while not moves and time.monotonic() < deadline:
        time.sleep(0.5)
    assert moves and moves[0].returncode == 0, moves[0].stderr if moves else "the reshard did not finish"
    after = redis_cluster.slot_counts()
    assert after[source] == before[source] - 2000 and after[target] == before[target] + 2000, (before, after)
    print(f"reshard ran {timing['reshard ended'] - timing['reshard started']:.1f} s; flows ended "
          f"{timing['flows ended'] - timing['reshard started']:.1f} s after it started")
    check_every_flow(results, a, b)
    # The move overlapped the flows: they ended after it started.
    assert timing["flows ended"] > timing["reshard started"] + 1.0, timing


def test_a_frozen_master_does_not_silence_the_streams_of_its_sessions(redis_cluster: RedisClusterServers, nodes: Cluster) -> None:
    """A master that stops answering without closing its connections (SIGSTOP: a hung host, a partition) never tells
    its subscribers; its replica takes over, and the node moves the session's subscription there when its periodic
    topology read shows the slot served elsewhere. The stream, held all along, gets every event."""
    a, b = start_nodes(nodes, redis_cluster)
    session_id = new_session_id("frz")
    stream = Stream(a, session_id).start()
    stream.wait_opened()
    frozen = slot_master(redis_cluster, f"tandem:{{{session_id}}}:events")
    redis_cluster.kill(frozen, signal.SIGSTOP)
    try:
        assert redis_cluster.wait_whole(3, without=frozen), "no replica took over"
        with httpx.Client(base_url=b.base_url) as phone:
            assert phone_step(phone, "GET", f"/api/validate-session?session={session_id}").status_code == 200
            assert phone_step(phone, "POST", "/api/input-started", body={"sessionId": session_id}).status_code == 200
            assert phone_step(phone, "POST", "/api/submit", body={"sessionId": session_id, "name": NAME, "phone": PHONE}).status_code == 200
        assert stream.wait_for_id("3", timeout=15.0), f"{stream.describe()}\n{a.log()}"
        assert flow_events(stream.snapshot()) == FULL_FLOW, stream.describe()
    finally:
        redis_cluster.kill(frozen, signal.SIGCONT)
        stream.stop()


def slot_master(servers: RedisClusterServers, key: str) -> int:
    """The port of the master that serves `key`'s slot."""
    slot = servers.command(servers.nodes[0], "CLUSTER", "KEYSLOT", key)
    for port in servers.masters():
        ranges = servers.command(port, "CLUSTER", "SHARDS")
        for shard in ranges:
            fields = dict(zip(shard[::2], shard[1::2]))
            bounds = fields["slots"]
            nodes = [dict(zip(node[::2], node[1::2])) for node in fields["nodes"]]
            if any(int(n["port"]) == port and n["role"] == "master" for n in nodes) and any(
                bounds[i] <= slot <= bounds[i + 1] for i in range(0, len(bounds), 2)
            ):
                return port
    raise AssertionError(f"no master serves slot {slot}")


def test_bad_data_on_a_shard_channel_or_a_wrong_key_type_is_logged_counted_and_harms_no_one(
    redis_cluster: RedisClusterServers, nodes: Cluster,
) -> None:
    a, b = start_nodes(nodes, redis_cluster)
    victim, bystander = new_session_id("bad"), new_session_id("ok")
    victim_stream = Stream(a, victim).start()
    victim_stream.wait_opened()
    bystander_stream = Stream(a, bystander).start()
    bystander_stream.wait_opened()

    # Garbage on the victim's shard channel, published at the slot's master as anything with access could.
    channel = f"tandem:{{{victim}}}:events"
    master = slot_master(redis_cluster, channel)
    for payload in ("not json", '{"id":"x"}', '{"id":99999999999999999999,"type":"complete"}', "\xff\xfe"):
        assert redis_cluster.command(master, "SPUBLISH", channel, payload) == 1
    # A key of the wrong type where the victim's record is.
    record = f"tandem:{{{victim}}}:session"
    redis_cluster.command(slot_master(redis_cluster, record), "DEL", record)
    redis_cluster.command(slot_master(redis_cluster, record), "SET", record, "oops", "EX", "60")

    with httpx.Client(base_url=b.base_url) as phone:
        answer = phone.get(f"/api/validate-session?session={victim}")
        assert answer.status_code == 404, answer.text
    # Everyone else is served as before: a whole flow on the bystander.
    with httpx.Client(base_url=b.base_url) as phone:
        assert phone.get(f"/api/validate-session?session={bystander}").status_code == 200
        assert phone.post("/api/input-started", json={"sessionId": bystander}).status_code == 200
        assert phone.post("/api/submit", json={"sessionId": bystander, "name": NAME, "phone": PHONE}).status_code == 200
    assert bystander_stream.wait_for_id("3"), bystander_stream.describe()
    assert flow_events(bystander_stream.snapshot()) == FULL_FLOW
    # The garbage reached no reader, and was counted and logged.
    assert flow_events(victim_stream.snapshot()) == [], victim_stream.describe()
    metrics = httpx.get(f"{a.base_url}/metrics", timeout=5.0).text
    assert "tandem_broker_messages_rejected_total 4" in metrics, [line for line in metrics.splitlines() if "rejected" in line]
    assert a.process.count("dropped a message that is not a Tandem event") == 3, a.log()  # the 1st, 2nd and 4th
    assert b.process.count("session data is corrupt") >= 1, b.log()
    victim_stream.stop()
    bystander_stream.stop()
