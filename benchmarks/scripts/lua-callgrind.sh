#!/bin/bash
# usage: lua-callgrind.sh NAME:FILE.lua:STYLE ... -> Redis's instructions per EVALSHA of each script (callgrind, exact):
# 1,000 calls on 1,000 fresh sessions, each a phone's claim and `connected` step. STYLE: new (Tandem's publish
# arguments now), old (e43be3e's), opennew/openold (the open script's). A fresh redis-server per script.
port=46390
rm -rf /tmp/cg; mkdir -p /tmp/cg
for spec in "$@"; do
valgrind --tool=callgrind --callgrind-out-file=/tmp/cg/out.%p.%n --instr-atstart=no redis-server --port $port --bind 127.0.0.1 --save "" --appendonly no --dir /tmp/cg --pidfile /tmp/cg/pid > /tmp/cg/vg.log 2>&1 &
  vpid=$!
  for i in $(seq 50); do redis-cli -p $port ping > /dev/null 2>&1 && break; sleep 0.3; done
  IFS=: read -r name file style <<< "$spec"
  python3 "$(cd "$(dirname "$0")" && pwd)/lua_calls.py" $port "$name" "$file" "$style" /tmp/cg/pid
  f=$(ls -t /tmp/cg/out.* | head -1)
  ir=$(grep -m1 "^totals:" $f | awk '{print $2}')
  echo "$name instructions/call $((ir/1000)) ($f)"
  kill $vpid; wait $vpid 2>/dev/null
done
