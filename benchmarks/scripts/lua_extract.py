# usage: python3 lua_extract.py Sources/Broker/Redis/RedisScripts.swift TAG -> ' + (__import__('os').environ.get('OUT', '.')) + '/TAG-publish.lua and TAG-openSession.lua, the scripts as Redis runs them
import os,re,sys,textwrap
src=open(sys.argv[1]).read()
def lit(name):
    m=re.search(r'static let '+name+r' = (checks \+ )?"""\n(.*?)\n\s*"""', src, re.S)
    body=textwrap.dedent(m.group(2)+"\n")
    return body, bool(m.group(1))
checks,_=lit('checks')
for n in ['publish','openSession']:
    b,withchecks=lit(n)
    if n=='openSession':
        m=re.search(r'static let openSession = """\n(.*?)\n\s*""" \+ checks \+ """\n(.*?)\n\s*"""',src,re.S)
        b=textwrap.dedent(m.group(1)+"\n")+checks+textwrap.dedent(m.group(2)+"\n")
    elif withchecks: b=checks+b
    open(f"{os.environ.get('OUT', '.')}/{sys.argv[2]}-{n}.lua",'w').write(b)
