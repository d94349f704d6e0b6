#!/usr/bin/env python3
# usage: phases.py STACKS EVENTS -> a fanout profile's CPU in µs per event by phase (the innermost frame that names a
# phase wins), user space and kernel apart. STACKS: `perf script -i DATA -F ip,sym,dso | swift demangle --simplified
# --compact` of fanrec.sh's DATA; EVENTS: the events published while perf recorded (rate x 6 s). perf samples at 4999 Hz.
import sys, collections
events=float(sys.argv[2]); us=1e6/4999/events
samples=[]; cur=[]
for line in open(sys.argv[1], errors='replace'):
    line=line.rstrip('\n')
    if not line.strip():
        if cur: samples.append(cur); cur=[]
        continue
    cur.append(line.strip())
if cur: samples.append(cur)
phases=[
 ('AsyncStream (yield, next, finish)','AsyncStream'),
 ('broker publish (in memory, minus delivery)','InMemoryBroker.publish'),
 ('SSE writes of streams (SessionStream.run)','SessionStream.run'),
 ('response written (HTTPConnectionHandler.write)','HTTPConnectionHandler.write('),
 ('endpoint: submit','API.submit'),('endpoint: input-started','API.inputStarted'),('endpoint: validate-session','API.validateSession'),
 ('endpoint: open stream','API.openStream'),('endpoint: events (before open)','API.events'),
 ('router, security, rate limits','Router.respond'),('router, security, rate limits','SecureResponder'),
 ('request task, other','swift_task_immediate'),('request task, other','swift_job_run'),
 ('request parsing','HTTP1RequestParser'),('request head handling','headArrived'),
 ('accept','ServerSocketChannel'),('close (error or EOF)','close0'),('close (error or EOF)','channelInactive'),
 ('nio-floor: its handler (parse, route, write)','FloorHandler'),
 ('flush','flushNow'),('read from socket','readFromSocket'),('event loop, epoll, timers','SelectableEventLoop'),
]
c=collections.Counter(); k=collections.Counter()
for s in samples:
    kern = '[kernel.kallsyms]' in s[0]
    name='other'
    for f in s:  # innermost first
        hit=[p for p,n in phases if n in f]
        if hit: name=hit[0]; break
    (k if kern else c)[name]+=1
t=len(samples)
print(f"{'phase':48s} user  kernel (µs/event)")
for n in sorted(set(c)|set(k), key=lambda n:-(c[n]+k[n])): print(f"{n:48s} {c[n]*us:5.1f} {k[n]*us:6.1f}")
print(f"{'total':48s} {sum(c.values())*us:5.1f} {sum(k.values())*us:6.1f}")
