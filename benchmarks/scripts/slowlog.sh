#!/bin/bash
# usage: slowlog.sh DIR -> time per script (µs, Redis's own measure) during a Redis flow
# The client: this checkout's release tandem-bench unless BENCH names another.
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
d=$1
cd $d; (timeout 100 "$BENCH" flow --target tandem-redis --tandem $d/.build/release/tandem --duration 12 --no-charts --quiet > /tmp/sl.txt 2>&1 &)
sleep 7
port=$(ss -ltnp | grep "pid=$(pgrep -n -x redis-server)," | awk '{print $4}' | sed 's/.*://' | head -1)
redis-cli -p $port config set slowlog-max-len 100000 > /dev/null; redis-cli -p $port slowlog reset > /dev/null
redis-cli -p $port config set slowlog-log-slower-than 0 > /dev/null; sleep 1; redis-cli -p $port config set slowlog-log-slower-than 10000000 > /dev/null
redis-cli -p $port --json slowlog get 100000 > /tmp/sl.json 2>/dev/null || redis-cli -p $port slowlog get 100000 > /tmp/sl.raw
redis-cli -p $port script show 2>/dev/null | head -1 >/dev/null
sleep 8
python3 - <<'PY'
import json,collections,re
try:
    entries=json.load(open('/tmp/sl.json'))
except Exception as e:
    print('no json', e); raise SystemExit
c=collections.defaultdict(list)
for e in entries:
    args=e[3]
    name=args[0].lower()
    if name=='evalsha':
        name='evalsha '+args[1][:8]+' keys='+args[2]
    c[name].append(e[2])
tot=sum(sum(v) for v in c.values())
for k,v in sorted(c.items(), key=lambda kv:-sum(kv[1])):
    print(f"{k:40s} calls {len(v):6d}  mean {sum(v)/len(v):6.1f} µs  share {100*sum(v)/tot:5.1f}%")
PY
