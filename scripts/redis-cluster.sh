#!/usr/bin/env bash
# A real Redis Cluster for the tests: six `redis-server --cluster-enabled yes` on free loopback ports (3 masters, 3
# replicas, `cluster-node-timeout` 1 s so a failover takes seconds), joined by `redis-cli --cluster create`.
#   scripts/redis-cluster.sh start DIR   starts it, waits until every slot is served, prints the nodes (host:port,...)
#   scripts/redis-cluster.sh stop DIR    stops every node by PID and removes DIR
#   scripts/redis-cluster.sh restart DIR PORT   starts a node again (after a test killed it): it rejoins the cluster
#                                        from its nodes.conf, as a replica if its master was replaced meanwhile
# Ports are below 55536: each node's cluster bus listens on its port + 10000.
set -euo pipefail
command=${1:?start or stop}; dir=${2:?a folder for the nodes}

if [ "$command" = stop ]; then
    # All signalled first, then waited for: each takes a second or two to exit, and they need not take turns.
    pids=()
    for pidfile in "$dir"/*/redis.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile"); kill "$pid" 2>/dev/null || true
        pids+=("$pid")
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$dir"
    exit 0
fi

start_node() {
    local port=$1
    mkdir -p "$dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" \
        --cluster-node-timeout 1000 --repl-diskless-sync-delay 0 --shutdown-timeout 0 --save '' --appendonly no --dir "$dir/$port" \
        --daemonize yes --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log"
}

if [ "$command" = restart ]; then
    port=${3:?the port of the node to start again}
    start_node "$port"
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    exit 0
fi

mkdir -p "$dir"
# Six ports whose bus ports (+10000) are free too.
ports=$(python3 - <<'PY'
import random, socket
def free(port):
    with socket.socket() as s:
        try: s.bind(("127.0.0.1", port)); return True
        except OSError: return False
chosen = []
while len(chosen) < 6:
    port = random.randint(20000, 45000)
    clash = {port, port + 10000, port - 10000} & set(chosen)
    if not clash and free(port) and free(port + 10000): chosen.append(port)
print(" ".join(map(str, chosen)))
PY
)
nodes=()
for port in $ports; do
    start_node "$port"
    nodes+=("127.0.0.1:$port")
done
for node in "${nodes[@]}"; do
    for _ in $(seq 50); do redis-cli -p "${node##*:}" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1
# Every node must agree the cluster is whole before a test uses it.
for node in "${nodes[@]}"; do
    for _ in $(seq 100); do
        redis-cli -p "${node##*:}" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break
        sleep 0.1
    done
done
# And every replica must have its master's data: one still on its first sync cannot be promoted.
for node in "${nodes[@]}"; do
    for _ in $(seq 100); do
        info=$(redis-cli -p "${node##*:}" info replication 2>/dev/null)
        grep -q '^role:master' <<<"$info" && break
        grep -q '^master_link_status:up' <<<"$info" && break
        sleep 0.1
    done
done
(IFS=,; echo "${nodes[*]}")
