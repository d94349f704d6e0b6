"""The calls lua-callgrind.sh counts: `python3 lua_calls.py PORT NAME FILE.lua STYLE PIDFILE`. Loads the script,
makes 1,000 sessions as Tandem opens them, and sends 1,000 EVALSHAs (pipelined RESP over a raw socket) with
callgrind's instrumentation on around them only (callgrind_control on the redis-server of PIDFILE), then dumps."""
import re, socket, subprocess, sys, time

N = 1000
port, name, path, style, pidfile = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
sock = socket.create_connection(("127.0.0.1", port))
replies = sock.makefile("rb")


def enc(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read():
    line = replies.readline()
    kind = line[:1]
    if kind in b"+-:":
        return line[1:-2]
    if kind == b"$":
        n = int(line[1:-2])
        return None if n < 0 else replies.read(n + 2)[:-2]
    if kind == b"*":
        return [read() for _ in range(max(int(line[1:-2]), 0))]


def cmd(*args):
    sock.sendall(enc(args))
    return read()


def pipe(cmds):
    reply = None
    for i in range(0, len(cmds), 500):
        sock.sendall(b"".join(enc(c) for c in cmds[i : i + 500]))
        for _ in cmds[i : i + 500]:
            reply = read()
    return reply


def calls(sha, now):
    """The EVALSHAs of STYLE: new/new13/old (the publish script's arguments now, before the 14th, and at e43be3e), opennew/openold (open's)."""
    out = []
    for i in range(N):
        k = f"tandem:{{{name}{i}}}"
        o = f"tandem:{{o{name}{i}}}"
        if style in ("new", "new13"):
            # new13: the arguments before the broker's time was the 14th (29 Nov 2026).
            out.append(["EVALSHA", sha, 3, k + ":session", k + ":log", k + ":pc", "connected", "connected", k + ":events",
                        "", "", str(now * 1000), "", "", "-", "1234", "1", "k" * 32, ""] + ([str(now)] if style == "new" else []))
        elif style == "old":
            out.append(["EVALSHA", sha, 2, k + ":session", k + ":log", "connected", "connected", k + ":events", "", "", str(now * 1000)])
        elif style == "opennew":
            out.append(["EVALSHA", sha, 4, o + ":session", o + ":log", o + ":opened", o + ":pc", now, now + 600000, 600000, "r" * 32, 1200000, 60000])
        else:
            out.append(["EVALSHA", sha, 2, o + ":session", o + ":opened", now, now + 600000, 600000, "r" * 32, 1200000])
    return out


sha = cmd("SCRIPT", "LOAD", open(path).read()).decode()
cmd("FLUSHALL")
now = int(time.time() * 1000)
setup = []
for i in range(N):
    k = f"tandem:{{{name}{i}}}"
    setup.append(["HSET", k + ":session", "createdAt", now, "expiresAt", now + 600000, "status", "waiting", "lastEventID", "0", "readerKey", "x"])
    setup.append(["PEXPIRE", k + ":session", 600000])
    setup.append(["SET", k + ":pc", "1", "PX", 600000])
pipe(setup)
pid = open(pidfile).read().strip()
batch = calls(sha, now)
subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True)
pipe(batch)
subprocess.run(["callgrind_control", "-d", name, pid], capture_output=True)
subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True)
