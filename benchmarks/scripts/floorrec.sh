#!/bin/bash
# usage: floorrec.sh TAG [rate] -> perf data of benchmarks/floor's nio-floor during a fanout (1000 streams), as fanrec.sh
# records a Tandem node: split it by phase with phases.py (its handler is the phase "nio-floor: its handler").
root=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${BENCH:-$root/.build/release/tandem-bench}
tag=$1; rate=${2:-1000}
floor=$root/benchmarks/floor/.build/release/nio-floor
[ -x "$floor" ] || (cd "$root/benchmarks/floor" && swift build -c release) >&2
cd "$root"; (timeout 100 "$BENCH" fanout --target tandem-memory --tandem "$floor" --rate $rate --streams 1000 --duration 12 --no-charts --quiet > /tmp/floorrec-$tag.txt 2>&1 &)
for i in $(seq 1 60); do p=$(pgrep -P "$(pgrep -n -f "tandem-bench fanout")" -x nio-floor 2>/dev/null); [ -n "$p" ] && break; sleep 0.5; done
sleep 7
perf record -F 4999 -e cpu-clock -g -p $p -o ${OUT_DIR:-/tmp}/fan-$tag.data -- sleep 6 > /dev/null 2>&1
while pgrep -f "tandem-bench fanout" > /dev/null; do sleep 1; done
tail -1 /tmp/floorrec-$tag.txt | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print('$tag', d['published'], d['latency_ms']['p99'], d['server_cpu_per_event_us'])"
