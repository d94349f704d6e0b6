#!/bin/bash
# usage: taskenq.sh DIR [rate] -> real executor enqueues (swift_task_enqueue) and swift_task_switch calls per event of
# DIR's release tandem during a fanout (uprobes; first: perf probe -x libswift_Concurrency.so swift_task_enqueue, ... swift_task_switch)
d=${1:-.}; rate=${2:-300}
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
cd $d; (timeout 100 "$BENCH" fanout --target tandem-memory --nchan-churn 3 --rate $rate --duration 12 --tandem $d/.build/release/tandem --no-charts --quiet > /tmp/enq.txt 2>&1 &)
sleep 6
p=$(pgrep -n -x tandem -P "$(pgrep -n -f "tandem-bench fanout")")
perf record -q -o /tmp/enq.data -g -e probe_libswift_Concurrency:swift_task_enqueue -p $p -- sleep 3 > /dev/null 2>&1
perf stat -x, -e probe_libswift_Concurrency:swift_task_enqueue,probe_libswift_Concurrency:swift_task_switch -p $p -o /tmp/enq.csv -- sleep 3 > /dev/null 2>&1
sleep 5
awk -F, -v r=$rate '/probe/{printf "%s per event %.2f\n", $3, $1/(r*3)}' /tmp/enq.csv
