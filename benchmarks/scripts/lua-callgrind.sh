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
    name=${spec%%:*}
  python3 - $port $spec $(cd "$(dirname "$0")" && pwd)/lua_calls.py <<'PY'
import sys,subprocess,time
sys.argv=[sys.argv[0]]+sys.argv[1:]
port=int(sys.argv[1]); spec=sys.argv[2]
exec(open(sys.argv[3]).read().split("for spec in sys.argv[2:]:")[0].replace("PID=int(open('/tmp/rtest/redis.pid').read())","PID=int(open('/tmp/cg/pid').read())").replace("N=6000","N=1000"))
name,path,style=spec.split(':')
# hook: toggle collection around the calls
orig_pipe=pipe
def run2():
    sha=cmd('SCRIPT','LOAD',open(path).read()).decode()
    cmd('FLUSHALL')
    now=int(time.time()*1000); tag=name
    setup=[]
    for i in range(N):
        k=f'tandem:{{{tag}{i}}}'
        setup.append(['HSET',k+':session','createdAt',now,'expiresAt',now+600000,'status','waiting','lastEventID','0','readerKey','x'])
        setup.append(['PEXPIRE',k+':session',600000]); setup.append(['SET',k+':pc','1','PX',600000])
    pipe(setup)
    calls=[]
    if style in ('openold','opennew'):
        for i in range(N):
            k=f'tandem:{{o{tag}{i}}}'
            if style=='opennew': calls.append(['EVALSHA',sha,4,k+':session',k+':log',k+':opened',k+':pc',now,now+600000,600000,'r'*32,1200000,60000])
            else: calls.append(['EVALSHA',sha,2,k+':session',k+':opened',now,now+600000,600000,'r'*32,1200000])
    for i in range(N if style in ('old','new') else 0):
        k=f'tandem:{{{tag}{i}}}'
        if style=='new':
            calls.append(['EVALSHA',sha,3,k+':session',k+':log',k+':pc','connected','connected',k+':events','','',str(now*1000),'','','-','1234','1','k'*32,''])
        else:
            calls.append(['EVALSHA',sha,2,k+':session',k+':log','connected','connected',k+':events','','',str(now*1000)])
    subprocess.run(['callgrind_control','-i','on',str(PID)],capture_output=True)
    pipe(calls)
    subprocess.run(['callgrind_control','-d',name,str(PID)],capture_output=True)
    subprocess.run(['callgrind_control','-i','off',str(PID)],capture_output=True)
run2()
PY
  f=$(ls -t /tmp/cg/out.* | head -1)
  ir=$(grep -m1 "^totals:" $f | awk '{print $2}')
  echo "$name instructions/call $((ir/1000)) ($f)"
  kill $vpid; wait $vpid 2>/dev/null
done
