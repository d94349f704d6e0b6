#!/bin/bash
# usage: fancount.sh DIR TARGET TAG [rate] -> what the server does per event during fanout in Tandem's shape (nchan: churn 3):
# mallocs, and for Tandem Swift objects allocated, retains, tasks made, task switches; writes. Counted by uprobes
# (perf stat), so the run is slowed and only the counts mean anything, not its times. Needs root and perf.
# DIR: the checkout whose release `tandem` runs; the client is this checkout's release tandem-bench unless BENCH names one.
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
d=$1; t=$2; tag=$3; rate=${4:-300}
libc=$(ldconfig -p | awk '/libc.so.6 .*x86-64/{print $NF; exit}')
swiftlib=$(dirname "$(readlink -f "$(command -v swift)")")/../lib/swift/linux
perf probe -q -x "$libc" malloc 2>/dev/null
events=probe_libc:malloc,syscalls:sys_enter_write,syscalls:sys_enter_writev
if [ "$t" != nchan-memory ]; then
  perf probe -q -x "$swiftlib/libswiftCore.so" swift_allocObject 2>/dev/null
  perf probe -q -x "$swiftlib/libswiftCore.so" swift_retain 2>/dev/null
  perf probe -q -x "$swiftlib/libswift_Concurrency.so" swift_task_create 2>/dev/null
  perf probe -q -x "$swiftlib/libswift_Concurrency.so" swift_task_switch 2>/dev/null
  events=$events,probe_libswiftCore:swift_allocObject,probe_libswiftCore:swift_retain,probe_libswift_Concurrency:swift_task_create,probe_libswift_Concurrency:swift_task_switch
fi
out=/tmp/fancount-$tag-$$
cd "$d"; (timeout 100 "$BENCH" fanout --target "$t" --nchan-churn 3 --rate "$rate" --duration 12 --tandem "$d/.build/release/tandem" --no-charts --quiet > $out.txt 2>&1 &)
sleep 6
if [ "$t" = nchan-memory ]; then p=$(pgrep -n -f "nginx: worker"); else p=$(pgrep -n -x tandem -P "$(pgrep -n -f "tandem-bench fanout")"); fi
perf stat -x, -e "$events" -p "$p" -o $out.csv -- sleep 4 > /dev/null 2>&1
sleep 8
python3 - $out.csv "$tag" "$rate" <<'PY'
import sys
rows = [l.split(',') for l in open(sys.argv[1]) if ',' in l and not l.startswith('#')]
events = float(sys.argv[3]) * 4
print(sys.argv[2], 'per event:', ' '.join(f"{r[2].split(':')[-1].replace('sys_enter_', '')}={float(r[0]) / events:.1f}" for r in rows if r[0].replace('.', '').isdigit()))
PY
grep '"fanout"' $out.txt | tail -1 | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print('  published', d['published'], 'lost', d['lost'])"
