#!/bin/bash
# usage: threads.sh DIR [rate] -> user and system CPU of each thread of DIR's release tandem over 4 s of a fanout
d=${1:-.}; rate=${2:-1000}
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
cd $d; (timeout 100 "$BENCH" fanout --target tandem-memory --nchan-churn 3 --rate $rate --duration 10 --tandem $d/.build/release/tandem --no-charts --quiet > /tmp/pt.txt 2>&1 &)
sleep 5
p=$(pgrep -n -x tandem -P "$(pgrep -n -f "tandem-bench fanout")")
snap() { for t in /proc/$p/task/*; do echo "$(basename $t) $(cat $t/comm | tr ' ' '_') $(awk '{print $14, $15}' $t/stat)"; done; }
snap > /tmp/pt.a; sleep 4; snap > /tmp/pt.b
join <(sort /tmp/pt.a) <(sort /tmp/pt.b) | awk '{u=$6-$3; s=$7-$4; if (u+s>0) printf "%-8s %-22s user %5d ms sys %5d ms\n", $1, $2, u*10, s*10}'
sleep 7; grep fanout /tmp/pt.txt | tail -1 | cut -c1-300
