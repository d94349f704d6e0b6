# python3 equiv.py PORT A/RedisScripts.swift B/RedisScripts.swift: runs the same operations (the handoff, claims,
# presence, and every corruption of RedisIntegrityTests) with both versions on twin sessions; prints each step where
# a reply or the keys left behind differ.
# Runs the same operations with two script versions on twin sessions and compares replies and resulting keys.
import sys, time; import rb
port, A, B = int(sys.argv[1]), sys.argv[2], sys.argv[3]
r = rb.connect(port)
SA, SB = rb.scripts(A), rb.scripts(B)
now = int(time.time() * 1000)
def K(i, s): return "tandem:{%s}:%s" % (i, s)
def norm(x):
    if isinstance(x, Exception):
        m = str(x); return ("ERR", m.split(" script:")[0])
    if isinstance(x, list):
        # HGETALL-like flat lists of bytes: compare as sorted pairs
        if len(x) % 2 == 0 and len(x) > 0 and all(isinstance(v, bytes) for v in x) and x[0] in (b"createdAt", b"expiresAt", b"status", b"lastEventID", b"readerKey") or (len(x) % 2 == 0 and len(x) >= 8 and all(isinstance(v, bytes) for v in x)):
            return ("H", tuple(sorted(zip(x[0::2], x[1::2]))))
        return tuple(norm(v) for v in x)
    return x
def snap(i):
    out = []
    for k in ["session", "log", "opened", "pc", "phone"]:
        key = K(i, k); t = r.command("TYPE", key)
        v = r.command("HGETALL", key) if t == "hash" else r.command("LRANGE", key, 0, -1) if t == "list" else r.command("GET", key) if t == "string" else None
        if t == "hash": v = tuple(sorted(zip(v[0::2], v[1::2])))
        if t == "list": v = tuple(v)
        ttl = r.command("PTTL", key); out.append((k, t, v, 1 if ttl > 0 else ttl))
    return out
def op(S, i, name):
    t = str(now * 1000)
    o = lambda rk="rk": ["EVAL", S["openSession"], 4, K(i, "session"), K(i, "log"), K(i, "opened"), K(i, "pc"), now, now + 600000, 600000, rk, 1200000, 60000]
    p = lambda target, ev, pk="pk", claim="0", idem="", name="", phone="", reason="": ["EVAL", S["publish"], 3, K(i, "session"), K(i, "log"), K(i, "pc"), target, ev, K(i, "events"), name, phone, t, reason, idem, pk, "1234", claim, "nk" + pk]
    ops = {
        "open": o(), "open-other": o("other"), "open-nokey": o(""),
        "connected-claim": p("connected", "connected", claim="1"), "connected-noclaim": p("connected", "connected"),
        "connected-pc": p("connected", "connected", pk=""), "connected-other": p("connected", "connected", pk="pk2", claim="1"),
        "input": p("inputting", "input-started", idem="i1"), "input-other": p("inputting", "input-started", pk="pk2"),
        "complete": p("completed", "complete", idem="i2", name="山田", phone="090"),
        "cancel": p("cancelled", "cancelled", pk="", reason="pc-cancelled"),
        "review-pc": ["EVAL", S["reviewPresence"], 3, K(i, "session"), K(i, "log"), K(i, "pc"), "pc", K(i, "events"), t],
        "review-phone": ["EVAL", S["reviewPresence"], 3, K(i, "session"), K(i, "log"), K(i, "phone"), "phone", K(i, "events"), t],
        "hold-phone": ["EVAL", S["holdPhonePresence"], 4, K(i, "session"), K(i, "log"), K(i, "phone"), K(i, "opened"), 60000, 1200000, K(i, "events"), t],
        "hold-pc": ["EVAL", S["holdPresence"], 3, K(i, "session"), K(i, "pc"), K(i, "opened"), 60000, 1200000],
        "drop-pc": ["DEL", K(i, "pc")], "drop-phone": ["DEL", K(i, "phone")],
        "drop-session": ["DEL", K(i, "session")],
        "c-log": ["SET", K(i, "log"), "x", "PX", 60000], "c-rec": ["SET", K(i, "session"), "x", "PX", 60000],
        "c-last": ["HSET", K(i, "session"), "lastEventID", "1.5"], "c-lastmax": ["HSET", K(i, "session"), "lastEventID", "9007199254740991"],
        "c-lastneg": ["HSET", K(i, "session"), "lastEventID", "-1"], "c-status": ["HSET", K(i, "session"), "status", "garbage"],
        "c-nostatus": ["HDEL", K(i, "session"), "status"], "c-created": ["HDEL", K(i, "session"), "createdAt"],
        "c-exp": ["HSET", K(i, "session"), "expiresAt", "253402300800000"], "c-half": ["HSET", K(i, "session"), "name", "A"],
        "c-persist": ["PERSIST", K(i, "session")], "c-lead0": ["HSET", K(i, "session"), "lastEventID", "0003"],
        "stray-log": ["RPUSH", K(i, "log"), '{"id":9,"event":"connected","t":"1"}'],
        "c-onlyreader": ["DEL", K(i, "session")], "c-onlyreader2": ["HSET", K(i, "session"), "readerKey", "z"],
        "drop-tomb": ["DEL", K(i, "opened")],
    }
    return ops[name]
SEQS = [
 "open connected-claim input complete connected-claim input complete cancel",
 "open connected-noclaim connected-pc input connected-claim connected-other input-other input complete",
 "open drop-pc connected-claim input", "open connected-claim drop-pc input review-pc review-pc",
 "open connected-claim hold-phone drop-phone review-phone hold-phone review-phone complete",
 "open open open-other drop-session open drop-tomb open",
 "stray-log open connected-claim", "open-nokey open", "hold-pc open hold-pc drop-session hold-pc open",
 "connected-claim review-pc hold-phone",
 "c-onlyreader c-onlyreader2 connected-claim open review-pc hold-phone",
 "open connected-claim cancel connected-claim input",
 "open c-lastmax connected-claim input",
 "open connected-claim c-lead0 input complete",
]
for c in ["c-log", "c-rec", "c-last", "c-lastneg", "c-status", "c-nostatus", "c-created", "c-exp", "c-half", "c-persist", "c-lastmax"]:
    SEQS.append("open connected-claim %s complete input open review-pc hold-phone review-phone connected-claim" % c)
    SEQS.append("open connected-claim drop-pc %s input review-pc" % c)
bad = 0
for n, seq in enumerate(SEQS):
    ia, ib = "eqa%06d%08x" % (n, now & 0xffffffff), "eqb%06d%08x" % (n, now & 0xffffffff)
    for step in seq.split():
        ra, rb_ = norm(r.pipeline([op(SA, ia, step)])[0]), norm(r.pipeline([op(SB, ib, step)])[0])
        ra, rb_ = repr(ra).replace(ia, "ID"), repr(rb_).replace(ib, "ID")
        sa, sb = repr(snap(ia)).replace(ia, "ID"), repr(snap(ib)).replace(ib, "ID")
        if ra != rb_ or sa != sb:
            bad += 1
            print("DIFF in [%s] at %s:\n  A %s\n  B %s\n  A %s\n  B %s" % (seq, step, ra[:300], rb_[:300], sa[:300], sb[:300]))
            break
print("sequences", len(SEQS), "differing", bad)
