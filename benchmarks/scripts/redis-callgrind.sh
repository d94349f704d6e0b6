#!/bin/bash
# usage: redis-callgrind.sh DIR TAG [n] -> Redis's instructions per handoff: redis-server under callgrind (exact counts,
# unlike time on shared cores), one node of DIR's release build on it, n handoffs one at a time (handoffs.py), counted
# from after 20 warm-up handoffs. Needs valgrind.
here=$(cd "$(dirname "$0")" && pwd)
d=$1; tag=$2; n=${3:-200}; rport=46391; port=18301
rm -rf /tmp/rph-$tag; mkdir -p /tmp/rph-$tag
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/rph-$tag/out.%p redis-server --port $rport --bind 127.0.0.1 --save "" --appendonly no --dir /tmp/rph-$tag > /tmp/rph-$tag/vg.log 2>&1 &
vpid=$!
for i in $(seq 60); do redis-cli -p $rport ping > /dev/null 2>&1 && break; sleep 0.3; done
cd $d; env LIMITS_SESSIONS_PER_MINUTE=0 LIMITS_REQUESTS_PER_MINUTE=0 HOST=127.0.0.1 PORT=$port BROKER=redis REDIS_URL=redis://127.0.0.1:$rport/0 EVENT_LOOPS=1 LOG_LEVEL=error $d/.build/release/tandem > /tmp/rph-$tag/node.log 2>&1 &
npid=$!
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$port/healthz && break; sleep 0.3; done
python3 $here/handoffs.py $port 20
sleep 1
callgrind_control -i on $vpid > /dev/null
python3 $here/handoffs.py $port $n
callgrind_control -d $tag $vpid > /dev/null
kill $npid; wait $npid 2>/dev/null; kill $vpid; wait $vpid 2>/dev/null
f=$(ls /tmp/rph-$tag/out.*.1 | head -1)
ir=$(grep -m1 "^totals:" $f | awk '{print $2}')
echo "$tag redis instructions/handoff $((ir/n))"
