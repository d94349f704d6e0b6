# A tiny RESP client and a phase-by-phase cost harness for Tandem's Redis scripts.
import socket, re, sys, time, os, hashlib

class R:
    def __init__(s, port):
        s.s = socket.create_connection(("127.0.0.1", port)); s.buf = b""
        s.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def enc(s, args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)
    def fill(s):
        d = s.s.recv(1 << 20)
        if not d: raise EOFError
        s.buf += d
    def line(s):
        while b"\r\n" not in s.buf: s.fill()
        l, s.buf = s.buf.split(b"\r\n", 1); return l
    def read(s):
        l = s.line(); t = l[:1]; r = l[1:]
        if t == b"+": return r.decode()
        if t == b"-": return Exception(r.decode())
        if t == b":": return int(r)
        if t == b"$":
            n = int(r)
            if n < 0: return None
            while len(s.buf) < n + 2: s.fill()
            v, s.buf = s.buf[:n], s.buf[n+2:]; return v
        if t == b"*":
            n = int(r)
            if n < 0: return None
            return [s.read() for _ in range(n)]
        raise ValueError(l)
    def pipe(s, cmds):
        s.s.sendall(b"".join(s.enc(c) for c in cmds))
        return [s.read() for _ in cmds]
    def __call__(s, *a): return s.pipe([a])[0]

def scripts(path):
    src = open(path).read()
    def lit(body):
        return "\n".join(l[8:] if l.startswith("        ") else l.strip() for l in body.split("\n")) + "\n"
    decls = {}
    for m in re.finditer(r'    static let (\w+) = ((?:(?:checks|"""\n.*?\n\s*""")(?: \+ )?)+)\n', src, re.S):
        parts = re.findall(r'checks|"""\n(.*?)\n\s*"""', m.group(2), re.S)
        toks = re.findall(r'(checks)|"""\n(.*?)\n\s*"""', m.group(2), re.S)
        decls[m.group(1)] = toks
    out = {}
    checks = lit(decls["checks"][0][1]) if "checks" in decls else ""
    for k, toks in decls.items():
        if k == "checks": continue
        out[k] = "".join(checks if c else lit(b) for c, b in toks)
    return out
