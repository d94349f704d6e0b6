#!/bin/bash
# usage: usersys.sh DIR [rate] [target] -> user and system CPU (ms/s) of the server during fanout
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
d=$1; rate=${2:-1000}; t=${3:-tandem-memory}
cd $d; (timeout 100 "$BENCH" fanout --target $t --nchan-churn 3 --rate $rate --duration 10 --tandem $d/.build/release/tandem --no-charts --quiet > /tmp/us.txt 2>&1 &)
sleep 5
if [ $t = nchan-memory ]; then p=$(pgrep -n -f "nginx: worker"); else p=$(pgrep -n -x tandem -P "$(pgrep -n -f "tandem-bench fanout")"); fi
a=($(awk '{print $14, $15}' /proc/$p/stat)); sleep 4; b=($(awk '{print $14, $15}' /proc/$p/stat))
echo "$t user $(( (${b[0]}-${a[0]})*10/4 )) ms/s sys $(( (${b[1]}-${a[1]})*10/4 )) ms/s at $rate ev/s"
sleep 7; grep fanout /tmp/us.txt | tail -1 | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print('cpu/event', d['server_cpu_per_event_us'], 'p99', d['latency_ms']['p99'])"
