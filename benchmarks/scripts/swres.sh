#!/bin/bash
# usage: swres.sh DIR TAG -> swift_task_switch calls per flow by the resuming function (the probe's %si)
# The client: this checkout's release tandem-bench unless BENCH names another; outputs under OUT_DIR (default /tmp).
BENCH=${BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release/tandem-bench}
d=$1; tag=$2
cd $d; (timeout 100 "$BENCH" flow --target tandem-memory --tandem $d/.build/release/tandem --duration 12 --no-charts --quiet > /tmp/swres-$tag.txt 2>&1 &)
for i in $(seq 1 60); do p=$(pgrep -P $(pgrep -n -f "tandem-bench flow") -x tandem 2>/dev/null); [ -n "$p" ] && break; sleep 0.5; done
sleep 5
cp /proc/$p/maps /tmp/swres-maps-$tag
perf record -e probe_libswift_Concurrency:swift_task_switch -e probe_libswift_Concurrency:swift_task_immediate -p $p -o ${OUT_DIR:-/tmp}/swr-$tag.data -- sleep 0.5 > /dev/null 2>&1
sleep 8
perf script -i ${OUT_DIR:-/tmp}/swr-$tag.data -F event,trace 2>/dev/null > /tmp/swres-$tag.txt
python3 - /tmp/swres-$tag.txt /tmp/swres-maps-$tag $d/.build/release/tandem <<'PY'
import sys,re,subprocess,collections,bisect
lines=open(sys.argv[1]).read().splitlines()
imm=sum(1 for l in lines if 'swift_task_immediate' in l)
vals=[int(m.group(1),16) for l in lines for m in [re.search(r'resume=(0x[0-9a-f]+)',l)] if m]
maps=[]
for l in open(sys.argv[2]):
    f=l.split()
    if len(f)>=6 and f[5].startswith('/'):
        lo,hi=[int(x,16) for x in f[0].split('-')]; maps.append((lo,hi,int(f[2],16),f[5]))
def locate(v):
    for lo,hi,off,path in maps:
        if lo<=v<hi: return path, v-lo+off
    return '?',v
syms={}
def symtab(path):
    if path in syms: return syms[path]
    out=subprocess.run(['nm','-n','--defined-only',path],capture_output=True,text=True).stdout
    t=[(int(a,16),n) for a,_,n in (l.split(' ',2) for l in out.splitlines() if len(l.split(' '))==3)]
    syms[path]=t; return t
c=collections.Counter()
for v in vals:
    path,off=locate(v)
    t=symtab(path) if path!='?' else []
    i=bisect.bisect_right([a for a,_ in t],off)-1 if t else -1
    c[(path.split('/')[-1], t[i][1] if i>=0 else hex(off))]+=1
print(f"switches {len(vals)}, task_immediate {imm}, switches per immediate {len(vals)/max(1,imm):.1f}")
names=subprocess.run(['swift','demangle','--simplified','--compact'],input='\n'.join(k[1] for k,_ in c.most_common(40)),capture_output=True,text=True).stdout.splitlines()
for (k,v),n in zip(c.most_common(40),names): print(f"{v/max(1,imm):6.2f} {k[0][:14]:14} {n[:150]}")
PY
