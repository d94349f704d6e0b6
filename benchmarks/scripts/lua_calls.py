"""The calls lua-callgrind.sh counts (loaded by it; not run alone): RESP over a raw socket, pipelined."""
import socket,sys,time,re
PORT=int(sys.argv[1]); N=6000
import subprocess
PID=int(open('/tmp/cg/pid').read())  # the redis-server that lua-callgrind.sh started
def oncpu(): return int(open(f'/proc/{PID}/schedstat').read().split()[0])
s=socket.create_connection(('127.0.0.1',PORT)); f=s.makefile('rb')
def enc(args):
    out=[b'*%d\r\n'%len(args)]
    for a in args:
        a=a if isinstance(a,bytes) else str(a).encode()
        out.append(b'$%d\r\n%s\r\n'%(len(a),a))
    return b''.join(out)
def read():
    l=f.readline()
    t=l[:1]
    if t in b'+-:': return l[1:-2]
    if t==b'$':
        n=int(l[1:-2]); 
        if n<0: return None
        d=f.read(n+2); return d[:-2]
    if t==b'*':
        n=int(l[1:-2]); return [read() for _ in range(max(n,0))]
def cmd(*a):
    s.sendall(enc(a)); return read()
def pipe(cmds):
    for i in range(0,len(cmds),500):
        s.sendall(b''.join(enc(c) for c in cmds[i:i+500]))
        for _ in cmds[i:i+500]: r=read()
    return r
def run(name, path, newstyle):
    sha=cmd('SCRIPT','LOAD',open(path).read()).decode()
    cmd('FLUSHALL')
    now=int(time.time()*1000); tag=name
    setup=[]
    for i in range(N):
        k=f'tandem:{{{tag}{i}}}'
        setup.append(['HSET',k+':session','createdAt',now,'expiresAt',now+600000,'status','waiting','lastEventID','0','readerKey','x'])
        setup.append(['PEXPIRE',k+':session',600000]); setup.append(['SET',k+':pc','1','PX',600000])
    pipe(setup)
    cmd('CONFIG','RESETSTAT')
    calls=[]
    for i in range(N):
        k=f'tandem:{{{tag}{i}}}'
        if newstyle:
            calls.append(['EVALSHA',sha,3,k+':session',k+':log',k+':pc','connected','connected',k+':events','','',str(now*1000),'','','-','1234','1','k'*32,''])
        else:
            calls.append(['EVALSHA',sha,2,k+':session',k+':log','connected','connected',k+':events','','',str(now*1000)])
    c0=oncpu(); last=pipe(calls); c1=oncpu()
    info=cmd('INFO','commandstats').decode()
    m=re.search(r'cmdstat_evalsha:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)',info)
    print(f'{name:12s} cpu/call {(c1-c0)/N/1000:.2f} wall-usec/call {m.group(3)}')
for spec in sys.argv[2:]:
    name,path,style=spec.split(':')
    run(name,path,style=='new')
