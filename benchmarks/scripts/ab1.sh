#!/bin/bash
# usage: ab1.sh DIR TAG [target] [flows] [duration] -> one flow run of DIR's release build: flows/s, p99, server cpu per flow
# The client: this checkout's release tandem-bench unless BENCH names another; outputs under OUT_DIR (default /tmp).
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
d=$1; tag=$2; target=${3:-tandem-memory}; flows=${4:-1000}; dur=${5:-8}
cd $d
out=/tmp/ab1-$tag-$$.txt
timeout 120 "$BENCH" flow --target $target --flows $flows --tandem $d/.build/release/tandem --duration $dur --no-charts --quiet > $out 2>/dev/null
tail -1 $out | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); d['build']='$tag'; d['load_average_1m_after']=open('/proc/loadavg').read().split()[0]; print(json.dumps(d))" >> ${AB_OUT:-${OUT_DIR:-/tmp}/ab1-all.jsonl}
tail -1 $out | python3 -c "
import json,sys
d=json.loads(sys.stdin.read())
print('$tag', '$target', 'flows/s', round(d['flows_per_s']), 'p99', d['latency_ms']['p99'], 'cpu/flow', d.get('server_cpu_per_flow_us'), 'load', open('/proc/loadavg').read().split()[0])
"
