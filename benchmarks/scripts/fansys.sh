#!/bin/bash
# usage: [DIR=checkout] fansys.sh TARGET TAG [rate] -> system calls per event of the server during a fanout (nchan in
# Tandem's shape); DIR holds the release `tandem` (default: this checkout). TARGET nio-floor: benchmarks/floor's server
# (floor.sh builds it). Needs root and perf.
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
t=$1; tag=$2; rate=${3:-1000}
d=${DIR:-$(cd "$(dirname "$0")/../.." && pwd)}; server=$d/.build/release/tandem; target=$t
if [ $t = nio-floor ]; then server=$(cd "$(dirname "$0")/../floor" && pwd)/.build/release/nio-floor; target=tandem-memory; fi
cd $d; (timeout 100 "$BENCH" fanout --target $target --rate $rate --duration 10 --nchan-churn 3 --tandem $server --no-charts --quiet > /tmp/fs-$tag.txt 2>&1 &)
sleep 6
if [ $t = nchan-memory ]; then p=$(pgrep -n -f "nginx: worker"); else p=$(pgrep -n -x "$(basename $server | cut -c1-15)" -P "$(pgrep -n -f "tandem-bench fanout")"); fi
perf stat -x, -e 'syscalls:sys_enter_*' -p $p -o /tmp/fs-$tag.csv -- sleep 4 > /dev/null 2>&1
sleep 6
python3 - /tmp/fs-$tag.csv $tag $rate <<'PY'
import sys
rows=[l.split(',') for l in open(sys.argv[1]) if ',' in l and not l.startswith('#')]
d={r[2].split(':')[-1]:float(r[0]) for r in rows if r[0].replace('.','').isdigit() and float(r[0])>0}
ev=float(sys.argv[3])*4
print(sys.argv[2], 'total per event %.2f:'%(sum(d.values())/ev), ' '.join(f"{k.replace('sys_enter_','')}={v/ev:.2f}" for k,v in sorted(d.items(), key=lambda kv:-kv[1])))
PY
grep fanout /tmp/fs-$tag.txt | tail -1 | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print('cpu/event', d['server_cpu_per_event_us'], 'p99', d['latency_ms']['p99'])"
