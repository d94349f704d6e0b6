#!/bin/bash
# usage: floor.sh TAG -> fanout of benchmarks/floor's nio-floor (SwiftNIO alone in Tandem's wire shape) and nchan-memory
# churn 3 in one run, as fanab.sh does for a Tandem build; builds nio-floor (release) when missing.
# The client: this checkout's release tandem-bench unless BENCH names another; outputs under OUT_DIR (default /tmp).
root=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${BENCH:-$root/.build/release/tandem-bench}
tag=$1
floor=$root/benchmarks/floor/.build/release/nio-floor
[ -x "$floor" ] || (cd "$root/benchmarks/floor" && swift build -c release) >&2
out=/tmp/floor-$tag-$$.txt
cd "$root"; timeout 200 "$BENCH" fanout --target tandem-memory,nchan-memory --nchan-churn 3 --rate ${RATE:-1000} --duration 8 --tandem "$floor" --no-charts --quiet > $out 2>/dev/null
grep '^{' $out | grep -E '"fanout"|"ratios"' | python3 -c "
import json,sys
for l in sys.stdin:
    d=json.loads(l); d['build']='$tag'
    if d.get('target')=='tandem-memory': d['target']='nio-floor'
    print(json.dumps(d), file=open('${AB_OUT:-${OUT_DIR:-/tmp}/fanab-all.jsonl}','a'))
    if d['scenario']=='fanout': print('$tag', d['target'], 'p50', d['latency_ms']['p50'], 'p99', d['latency_ms']['p99'], 'cpu/event', d['server_cpu_per_event_us'], 'lost', d['lost'])
    else: print('$tag ratios', {k:v for k,v in d.items() if k.startswith('fanout')})
"
