"""Full handoffs one at a time against one Tandem node: `python3 handoffs.py PORT N`. Each: the PC's stream
(session-info), validate (its phone cookie), input-started, submit, and `complete` read on the stream."""
import socket,sys,secrets,json,subprocess
port=int(sys.argv[1]); n=int(sys.argv[2])
def req(raw):
    s=socket.create_connection(('127.0.0.1',port)); s.sendall(raw)
    data=b''
    while True:
        c=s.recv(65536)
        if not c: break
        data+=c
        if b'\r\n\r\n' in data:
            head,_,body=data.partition(b'\r\n\r\n')
            import re
            m=re.search(rb'Content-Length: (\d+)',head,re.I)
            if m and len(body)>=int(m.group(1)): break
    s.close(); return data
def handoff():
    sid=secrets.token_urlsafe(16)
    st=socket.create_connection(('127.0.0.1',port))
    st.sendall(f'GET /api/events?session={sid} HTTP/1.1\r\nHost: x\r\n\r\n'.encode())
    buf=b''
    while b'session-info' not in buf: buf+=st.recv(65536)
    v=req(f'GET /api/validate-session?session={sid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'.encode())
    import re
    m=re.search(rb'Set-Cookie: ([^;]+)',v); cookie=m.group(1).decode() if m else 'none=1'
    b=json.dumps({'sessionId':sid})
    req(f'POST /api/input-started HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n{b}'.encode())
    b=json.dumps({'sessionId':sid,'name':'bench','phone':'0901234'})
    req(f'POST /api/submit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n{b}'.encode())
    while b'event: complete' not in buf: buf+=st.recv(65536)
    st.close()
for i in range(n): handoff()
