import re,subprocess,sys,collections,pickle,os
# usage: tree.py DATA EVENTS ROOT_REGEX [DEPTH] [MIN_US] -> callee tree below the outermost frame matching ROOT (µs/event, 4999 Hz)
data=sys.argv[1]; events=float(sys.argv[2]); root=re.compile(sys.argv[3])
depth=int(sys.argv[4]) if len(sys.argv)>4 else 3; minus=float(sys.argv[5]) if len(sys.argv)>5 else 1.0
cache=data+'.stacks.pkl'
if os.path.exists(cache): stacks=pickle.load(open(cache,'rb'))
else:
    raw=subprocess.run(['perf','script','-i',data,'-F','tid,ip,sym'],capture_output=True,text=True).stdout
    dem=subprocess.run(['swift','demangle','--simplified','--compact'],input=raw,capture_output=True,text=True).stdout
    stacks=[]
    for sample in dem.split('\n\n'):
        lines=[re.sub(r'^\s*[0-9a-f]+ ','',l.strip()) for l in sample.strip().split('\n')[1:] if l.strip()]
        if lines: stacks.append(list(reversed(lines)))  # outermost first
    pickle.dump(stacks,open(cache,'wb'))
us=1e6/4999/events
tree={}
def add(node,path):
    node.setdefault('n',0); node['n']+=1
    if path: add(node.setdefault('c',{}).setdefault(path[0],{}),path[1:])
top={}
skip=re.compile(r'^(partial apply|thunk|protocol witness|reabstraction|specialized thunk|merged )')
for s in stacks:
    idx=[i for i,f in enumerate(s) if root.search(f)]
    if not idx: continue
    path=[f for f in s[idx[0]:] if not skip.search(f)]
    add(top,path[:depth+1])
def show(name,node,d):
    v=node['n']*us
    if v<minus: return
    print(f"{'  '*d}{v:6.1f} {name[:150]}")
    for k,c in sorted(node.get('c',{}).items(),key=lambda kv:-kv[1]['n']): show(k,c,d+1)
print(f"total {len(stacks)*us:.1f}")
show('ROOT',top,0)
