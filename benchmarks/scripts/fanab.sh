#!/bin/bash
# usage: fanab.sh DIR TAG -> fanout of DIR's build and nchan-memory churn 3 in one run; prints tandem, nchan and the ratio line
# The client: this checkout's release tandem-bench unless BENCH names another; outputs under OUT_DIR (default /tmp).
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
d=$1; tag=$2
out=/tmp/fanab-$tag-$$.txt
cd $d; timeout 200 "$BENCH" fanout --target tandem-memory,nchan-memory --nchan-churn 3 --rate 1000 --duration 8 --tandem $d/.build/release/tandem --no-charts --quiet > $out 2>/dev/null
grep '^{' $out | grep -E '"fanout"|"ratios"' | python3 -c "
import json,sys
for l in sys.stdin:
    d=json.loads(l); d['build']='$tag'
    print(json.dumps(d), file=open('${AB_OUT:-${OUT_DIR:-/tmp}/fanab-all.jsonl}','a'))
    if d['scenario']=='fanout': print('$tag', d['target'], 'p50', d['latency_ms']['p50'], 'p99', d['latency_ms']['p99'], 'cpu/event', d['server_cpu_per_event_us'])
    else: print('$tag ratios', {k:v for k,v in d.items() if k.startswith('fanout')})
"
