"""A real Redis Cluster for one test: six `redis-server --cluster-enabled yes` (3 masters, 3 replicas) started by
scripts/redis-cluster.sh in a temporary directory, stopped by PID when the test ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tandem_e2e.nodes import REPO_ROOT
from tandem_e2e.resp import RedisError, redis_command

SCRIPT = str(REPO_ROOT / "scripts" / "redis-cluster.sh")


class RedisClusterServers:
    def __init__(self, directory: Path) -> None:
        self.directory = directory / "cluster"
        self.nodes: list[int] = []

    def start(self) -> "RedisClusterServers":
        done = subprocess.run([SCRIPT, "start", str(self.directory)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.fail(f"redis-cluster.sh start failed: {done.stderr}")
        self.nodes = [int(node.rsplit(":", 1)[1]) for node in done.stdout.strip().split(",")]
        return self

    def stop(self) -> None:
        subprocess.run([SCRIPT, "stop", str(self.directory)], capture_output=True, timeout=60)

    @property
    def seeds(self) -> str:
        """REDIS_CLUSTER_NODES for Tandem: two of the nodes, so a seed may be the one a test kills."""
        return ",".join(f"127.0.0.1:{port}" for port in self.nodes[:2])

    def command(self, port: int, *args: str | int) -> Any:
        return redis_command(port, *args)

    def masters(self) -> list[int]:
        """Ports of the masters that serve slots now, as any live node sees them."""
        for port in self.nodes:
            try:
                shards = redis_command(port, "CLUSTER", "SHARDS", timeout=2.0)
            except (OSError, RedisError):
                continue
            masters = []
            for shard in shards:
                fields = dict(zip(shard[::2], shard[1::2]))
                if not fields["slots"]:
                    continue
                for node in fields["nodes"]:
                    info = dict(zip(node[::2], node[1::2]))
                    if info["role"] == "master" and info["health"] == "online":
                        masters.append(int(info["port"]))
            return sorted(masters)
        return []

    def key_counts(self) -> dict[int, int]:
        """DBSIZE of each master."""
        return {port: redis_command(port, "DBSIZE") for port in self.masters()}

    def kill(self, port: int, sig: int = signal.SIGKILL) -> None:
        pid = int((self.directory / str(port) / "redis.pid").read_text())
        os.kill(pid, sig)

    def reshard(self, source: int, target: int, slots: int) -> subprocess.CompletedProcess:
        """Moves `slots` slots, keys and all, from master `source` to master `target` with `redis-cli --cluster
        reshard`, as an operator would."""
        source_id = redis_command(source, "CLUSTER", "MYID")
        target_id = redis_command(target, "CLUSTER", "MYID")
        return subprocess.run(
            ["redis-cli", "--cluster", "reshard", f"127.0.0.1:{source}", "--cluster-from", source_id, "--cluster-to", target_id,
             "--cluster-slots", str(slots), "--cluster-yes"],
            capture_output=True, text=True, timeout=300,
        )

    def slot_counts(self) -> dict[int, int]:
        """How many slots each master serves."""
        counts: dict[int, int] = {}
        for shard in redis_command(self.live_nodes()[0], "CLUSTER", "SHARDS"):
            fields = dict(zip(shard[::2], shard[1::2]))
            bounds = fields["slots"]
            for node in fields["nodes"]:
                info = dict(zip(node[::2], node[1::2]))
                if info["role"] == "master" and bounds:
                    counts[int(info["port"])] = sum(bounds[i + 1] - bounds[i] + 1 for i in range(0, len(bounds), 2))
        return counts

    def restart(self, port: int) -> None:
        """Starts a killed node again, as an operator's supervisor would: it rejoins as a replica of whoever
        replaced it."""
        done = subprocess.run([SCRIPT, "restart", str(self.directory), str(port)], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            pytest.fail(f"redis-cluster.sh restart failed: {done.stderr}")

    def wait_replicated(self, timeout: float = 30.0) -> bool:
        """Until every master has an online replica whose link is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            masters = self.masters()
            if len(masters) == 3 and all(
                "connected_slaves:1" in str(redis_command(port, "INFO", "replication")) for port in masters
            ):
                return True
            time.sleep(0.2)
        return False

    def wait_whole(self, expected_masters: int, without: int | None = None, timeout: float = 30.0) -> bool:
        """Until `expected_masters` online masters, none of them `without`, serve every slot (as each live node
        agrees)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            masters = self.masters()
            if len(masters) == expected_masters and without not in masters and all(self._state_ok(port) for port in self.live_nodes()):
                return True
            time.sleep(0.2)
        return False

    def live_nodes(self) -> list[int]:
        live = []
        for port in self.nodes:
            try:
                redis_command(port, "PING", timeout=1.0)
                live.append(port)
            except (OSError, RedisError):
                pass
        return live

    def _state_ok(self, port: int) -> bool:
        try:
            info = redis_command(port, "CLUSTER", "INFO", timeout=1.0)
        except (OSError, RedisError):
            return False
        return "cluster_state:ok" in str(info)
