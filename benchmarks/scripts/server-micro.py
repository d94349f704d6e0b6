#!/usr/bin/env python3
# usage: server-micro.py BINARY MODE [seconds] -> the node's CPU (user, system: /proc/PID/stat) per operation of one kind,
# with one event loop and the bench's limits; the client is this script, so only the server's CPU per op means anything.
#   health: GET /api/health on 8 keep-alive connections;
#   validate: GET /api/validate-session on a held session from a cookieless client (after the first, a 409);
#   open: 8 streams of new sessions opened at once, then closed by reset (no final event: presence released, reviewed);
#   flow / flowbatch: full handoffs (stream, validate, input-started, submit, reset) one / eight at a time.
import os, socket, subprocess, sys, time, struct, select, random, string
binary, mode = sys.argv[1], sys.argv[2]; secs = float(sys.argv[3]) if len(sys.argv) > 3 else 5
s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
env = dict(os.environ, PORT=str(port), HOST='127.0.0.1', EVENT_LOOPS='1', LOG_LEVEL='warning', HEARTBEAT_SECONDS='5', LIMITS_SESSIONS_PER_MINUTE='0',
           LIMITS_REQUESTS_PER_MINUTE='0', LIMITS_MAX_CONNECTIONS_PER_ADDRESS='100000', LIMITS_MAX_CONNECTIONS='19900')
proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    try: socket.create_connection(('127.0.0.1', port)).close(); break
    except OSError: time.sleep(0.1)
def cpu():
    f = open(f'/proc/{proc.pid}/stat').read().rsplit(')', 1)[1].split()
    return int(f[11]), int(f[12])
def conn():
    c = socket.create_connection(('127.0.0.1', port)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); return c
def readresp(c):
    data = b''
    while b'\r\n\r\n' not in data: data += c.recv(65536)
    head, body = data.split(b'\r\n\r\n', 1)
    n = 0
    for line in head.split(b'\r\n'):
        if line.lower().startswith(b'content-length:'): n = int(line.split(b':')[1])
    while len(body) < n: body += c.recv(65536)
    return head
ops = 0
if mode in ('health', 'validate'):
    sid = 'micro' + ''.join(random.choices(string.ascii_lowercase, k=10))
    hold = None
    if mode == 'validate':
        hold = conn(); hold.sendall(f'GET /api/events?session={sid} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n'.encode()); hold.recv(65536)
        path = f'/api/validate-session?session={sid}'
    else:
        path = '/api/health'
    req = f'GET {path} HTTP/1.1\r\nHost: x\r\n\r\n'.encode()
    cs = [conn() for _ in range(8)]
    for c in cs: c.sendall(req); readresp(c)
    a = cpu(); t0 = time.time()
    while time.time() - t0 < secs:
        for c in cs: c.sendall(req)
        for c in cs: readresp(c)
        ops += len(cs)
elif mode == 'open':
    a = cpu(); t0 = time.time(); n = 0
    while time.time() - t0 < secs:
        batch = []
        for _ in range(8):
            n += 1
            c = conn(); c.sendall(f'GET /api/events?session=microopen{os.getpid()}x{n} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n'.encode())
            batch.append(c)
        for c in batch:
            d = b''
            while b'session-info' not in d:
                got = c.recv(65536)
                if not got or b' 200 ' not in (d + got)[:20]: sys.exit('stream open refused: %r' % (d + got)[:200])
                d += got
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); c.close()
        ops += len(batch)
elif mode in ('flow', 'flowbatch'):
    # full handoffs: stream, validate, input-started, submit; flowbatch runs 8 at a time, step by step
    width = 8 if mode == 'flowbatch' else 1
    a = cpu(); t0 = time.time(); n = 0
    pubs = [conn() for _ in range(width)]
    while time.time() - t0 < secs:
        slots = []
        for k in range(width):
            n += 1; sid = f'microflow{os.getpid()}x{n}'
            c = conn(); c.sendall(f'GET /api/events?session={sid} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n'.encode())
            d = b''
            while b'session-info' not in d: d += c.recv(65536)
            slots.append((sid, c))
        for (sid, c), p in zip(slots, pubs):
            p.sendall(f'GET /api/validate-session?session={sid} HTTP/1.1\r\nHost: x\r\n\r\n'.encode())
        cookies = []
        for (sid, c), p in zip(slots, pubs):
            head = readresp(p).decode()
            cookies.append('; '.join(l.split(':',1)[1].strip().split(';')[0] for l in head.split('\r\n') if l.lower().startswith('set-cookie')))
            c.recv(65536)
        for step in ('input-started', 'submit'):
            for (sid, c), p, ck in zip(slots, pubs, cookies):
                body = f'{{"sessionId":"{sid}"}}' if step == 'input-started' else f'{{"sessionId":"{sid}","name":"bench","phone":"0901234"}}'
                p.sendall(f'POST /api/{step} HTTP/1.1\r\nHost: x\r\nCookie: {ck}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}'.encode())
            for (sid, c), p in zip(slots, pubs):
                h = readresp(p)
                if b' 200 ' not in h[:20]: sys.exit('step refused: %r' % h[:300])
                c.recv(65536)
        for sid, c in slots:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); c.close()
        ops += width
b = cpu(); el = time.time() - t0
tick = os.sysconf('SC_CLK_TCK')
print(f'{mode}: {ops/el:.0f} ops/s, server user {(b[0]-a[0])/tick/ops*1e6:.1f} us/op, sys {(b[1]-a[1])/tick/ops*1e6:.1f} us/op')
proc.terminate(); proc.wait()
