#!/bin/bash
# usage: cnt.sh DIR TAG -> Swift concurrency runtime calls per flow (uprobes) during a memory flow
# The client: this checkout's release tandem-bench unless BENCH names another; outputs under OUT_DIR (default /tmp).
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
d=$1; tag=$2
cd $d; (timeout 100 "$BENCH" flow --target tandem-memory --tandem $d/.build/release/tandem --duration 12 --no-charts --quiet > /tmp/cnt-$tag.txt 2>&1 &)
for i in $(seq 1 60); do p=$(pgrep -P $(pgrep -n -f "tandem-bench flow") -x tandem 2>/dev/null); [ -n "$p" ] && break; sleep 0.5; done
sleep 5
perf stat -x, -e 'probe_libswift_Concurrency:*' -e syscalls:sys_enter_accept4 -e probe_libc:malloc -p $p -o /tmp/cnt-$tag.csv -- sleep 3 > /dev/null 2>&1
sleep 6
python3 - /tmp/cnt-$tag.csv $tag <<'PY'
import sys
rows=[l.split(',') for l in open(sys.argv[1]) if ',' in l and not l.startswith('#')]
d={r[2].split(':')[-1]:float(r[0]) for r in rows if r[0].replace('.','').isdigit()}
acc=d.get('sys_enter_accept4',1)/2  # NIO calls accept4 twice per connection (the second gets EAGAIN)
print(sys.argv[2], 'per flow:', ' '.join(f"{k}={v/acc:.2f}" for k,v in sorted(d.items())))
PY
