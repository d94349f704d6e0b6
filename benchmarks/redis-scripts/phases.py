# Cost in Redis of each script run of a handoff, for the scripts of a given RedisScripts.swift (BENCHMARKS.md,
# "Winning back the Redis flow").
#   python3 phases.py PORT path/to/RedisScripts.swift N [label]
# runs, on N fresh sessions, each phase pipelined (open, log read, connected, input-started, complete, one presence
# hold) and prints Redis CPU µs per operation / evalsha µs per call (INFO). For instruction counts, run the
# redis-server under `valgrind --tool=callgrind --callgrind-out-file=$CGDIR/cg.out.%p` and set CGPID (its PID) and
# CGDIR: each phase is then counted with callgrind_control -z / -d (thousand instructions per operation). The label
# "old" passes the arguments of the scripts before issue 15 (e43be3e). JSONL=file appends one line per run.
import sys, time, threading, os, random
import rb
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
label = sys.argv[4] if len(sys.argv) > 4 else path
S = rb.scripts(path)
r = rb.connect(port)
sha = {k: r.command("SCRIPT", "LOAD", v).decode() for k, v in S.items()}
pre = "%08x" % random.getrandbits(32)
ids = ["%s%024x" % (pre, i) for i in range(n)]
K = lambda i, s: "tandem:{%s}:%s" % (i, s)
# a subscriber on every channel, as nodes do
sub = rb.connect(port)
for j in range(0, n, 500):
    sub.send(*(["SUBSCRIBE", K(i, "events")] for i in ids[j:j+500]))
    for _ in ids[j:j+500]: sub.read_reply()
def drain():
    try:
        while True: sub.sock.recv(1 << 20)
    except Exception: pass
threading.Thread(target=drain, daemon=True).start()
def cpu():
    info = r.command("INFO", "cpu").decode()
    d = dict(l.split(":") for l in info.split("\r\n") if ":" in l)
    return float(d["used_cpu_user"]) + float(d["used_cpu_sys"])
def evalstat():
    info = r.command("INFO", "commandstats").decode()
    for l in info.split("\r\n"):
        if l.startswith("cmdstat_evalsha:"):
            d = dict(kv.split("=") for kv in l.split(":", 1)[1].split(","))
            return int(d["calls"]), int(d["usec"])
    return 0, 0
now = int(time.time() * 1000)
CG = os.environ.get("CGPID")
import subprocess, glob
def cg(flag):
    subprocess.run(["callgrind_control", flag, CG], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
def cgread():
    f = max(glob.glob(os.environ.get("CGDIR", ".") + "/cg.out.%s.*" % CG), key=os.path.getmtime)
    for l in open(f):
        if l.startswith("summary:") or l.startswith("totals:"): v = int(l.split()[1])
    (os.rename(f, os.environ.get("CGDIR", ".") + "/keep." + NAME[0]) if os.environ.get("KEEP") else os.remove(f)); return v
NAME = [""]
def run(name, make, check=None):
    NAME[0] = name
    c0, (k0, u0) = cpu(), evalstat()
    if CG: cg("-z")
    t0 = time.perf_counter()
    for j in range(0, n, 100):
        replies = r.pipeline([make(i) for i in ids[j:j+100]])
        for x in replies:
            if isinstance(x, Exception) or (check and not check(x)): raise SystemExit("%s: %r" % (name, x))
    dt = time.perf_counter() - t0
    if CG:
        cg("-d"); ins = cgread()
    c1, (k1, u1) = cpu(), evalstat()
    if CG: return name, ins / n / 1000.0, 0
    calls = k1 - k0
    return name, (c1 - c0) / n * 1e6, ((u1 - u0) / calls if calls else 0)
def pub(target, event, idem):
    return lambda i: ["EVALSHA", sha["publish"], 3, K(i, "session"), K(i, "log"), K(i, "pc"), target, event, K(i, "events"), 
                      "Probe" if target == "completed" else "", "000" if target == "completed" else "", str(now * 1000), "", idem, "pk" + i, "123456", "1" if target == "connected" else "0", "pk" + i]
OLD = label == "old"
if OLD:
    def pub(target, event, idem):
        return lambda i: ["EVALSHA", sha["publish"], 2, K(i, "session"), K(i, "log"), target, event, K(i, "events"),
                          "Probe" if target == "completed" else "", "000" if target == "completed" else "", str(now * 1000)]
ok = lambda x: isinstance(x, list) and (OLD or x[0] in (b"ok", b"published"))
res = [
 run("open", lambda i: ["EVALSHA", sha["openSession"], 2, K(i, "session"), K(i, "opened"), now, now + 600000, 600000, "rk" + i, 1200000]) if OLD else
 run("open", lambda i: ["EVALSHA", sha["openSession"], 4, K(i, "session"), K(i, "log"), K(i, "opened"), K(i, "pc"), now, now + 600000, 600000, "rk" + i, 1200000, 60000], ok),
 run("events", lambda i: ["LRANGE", K(i, "log"), 0, -1]),
 run("connected", pub("connected", "connected", ""), ok),
 run("input-started", pub("inputting", "input-started", "idem1"), ok),
 run("complete", pub("completed", "complete", "idem2"), ok),
 run("hold", lambda i: ["PING"]) if OLD else run("hold", lambda i: ["EVALSHA", sha["holdPresence"], 3, K(i, "session"), K(i, "pc"), K(i, "opened"), 60000, 1200000]),
]
tot = sum(x[1] for x in res)
import json
if os.environ.get("JSONL"):
    with open(os.environ["JSONL"], "a") as out:
        out.write(json.dumps({"scenario": "redis_script_instructions", "scripts": label, "sessions": n, "unit": "thousand instructions of redis-server per operation (callgrind)" if CG else "us",
            "per_operation": {a: round(b, 1) for a, b, c in res}, "per_handoff_without_hold": round(tot - res[-1][1], 1), "load_average_1m": open("/proc/loadavg").read().split()[0]}) + "\n")
if CG: print("%-10s " % label + "  ".join("%s %.1f" % (a, b) for a, b, c in res) + "  | k-instructions/handoff %.1f (excl hold %.1f)" % (tot, tot - res[-1][1]))
else: print("%-10s " % label + "  ".join("%s %.1f/%.1f" % (a, b, c) for a, b, c in res) + "  | cpu/handoff %.1f us (excl hold %.1f)" % (tot, tot - res[-1][1]))
