#!/bin/bash
# usage: fanrec.sh DIR TAG [rate] -> perf data of the tandem node during a fanout (tandem-memory, 1000 streams)
# The client: this checkout's release tandem-bench unless BENCH names another; outputs under OUT_DIR (default /tmp).
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
d=$1; tag=$2; rate=${3:-1000}
cd $d; (timeout 100 "$BENCH" fanout --target tandem-memory --tandem $d/.build/release/tandem --rate $rate --streams 1000 --duration 12 --no-charts --quiet > /tmp/fanrec-$tag.txt 2>&1 &)
for i in $(seq 1 60); do p=$(pgrep -P $(pgrep -n -f "tandem-bench fanout") -x tandem 2>/dev/null); [ -n "$p" ] && break; sleep 0.5; done
sleep 7
perf record -F 4999 -e cpu-clock -g -p $p -o ${OUT_DIR:-/tmp}/fan-$tag.data -- sleep 6 > /dev/null 2>&1
sleep 6; tail -1 /tmp/fanrec-$tag.txt | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print('$tag', d['published'], d['latency_ms']['p99'], d['server_cpu_per_event_us'])"
