# Tandem's Redis scripts as a given RedisScripts.swift declares them (`scripts`), for the cost harness (phases.py) and
# the A/B equivalence check (equiv.py), and the connection they talk to Redis through (`connect`).
#
# The RESP client is the repository's one, Tests/e2e/tandem_e2e/resp.py (tested by Tests/e2e/test_resp.py): it lives
# with the end-to-end tests, its main user, and uses only the standard library, so these scripts put Tests/e2e on
# sys.path and import it with a plain python3.
import os, re, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "e2e"))
from tandem_e2e.resp import RedisConnection  # noqa: E402 (after the sys.path insert)

def connect(port):
    """A connection to 127.0.0.1:port with bulk strings as bytes and no timeout (a redis-server run under callgrind is
    slow): .command(*args) (raises an error reply), .pipeline(commands) (error replies as values), .send(*commands),
    .read_reply(), .sock."""
    return RedisConnection(port, timeout=None, decode=False)

def scripts(path):
    src = open(path).read()
    def lit(body):
        return "\n".join(l[8:] if l.startswith("        ") else l.strip() for l in body.split("\n")) + "\n"
    decls = {}
    for m in re.finditer(r'    static let (\w+) = ((?:(?:checks|"""\n.*?\n\s*""")(?: \+ )?)+)\n', src, re.S):
        toks = re.findall(r'(checks)|"""\n(.*?)\n\s*"""', m.group(2), re.S)
        decls[m.group(1)] = toks
    out = {}
    checks = lit(decls["checks"][0][1]) if "checks" in decls else ""
    for k, toks in decls.items():
        if k == "checks": continue
        out[k] = "".join(checks if c else lit(b) for c, b in toks)
    return out
