"""What the end-to-end tests in this folder share, one module per concept; the tests import from the modules
directly (conftest.py puts Tests/e2e on sys.path):

- `tandem_e2e.processes`: free loopback ports, bounded polling, `LoggedProcess` (a child whose output is collected in
  daemon threads, stopped by its PID with bounded waits).
- `tandem_e2e.resp`: the repository's one RESP2 client and parser (also used by benchmarks/redis-scripts).
- `tandem_e2e.redis_server`: `RedisServer`, a redis-server on a free loopback port.
- `tandem_e2e.nodes`: `tandem_binary`, `Node`, `Target`, and `Cluster`, which starts the Redis servers and Tandem nodes
  of a test and stops every one of them by PID, passed or failed.
- `tandem_e2e.sse`: `StreamThread`, `Stream`, `PhoneStream` (SSE streams read in daemon threads, waited on with
  deadlines) and the events a flow is expected to produce (`full_flow`, `flow_events`, `PAIRING_CODE`).
- `tandem_e2e.phone`: the phone's requests (`validate`, `input_started`, `submit`) and `expect_*` checks of their
  answers.

This file imports nothing, so that the benchmark scripts can import `tandem_e2e.resp` with a plain python3 (without
httpx or pytest). The browser helpers are in tandem_browser.py, next to this package, so that only the browser tests
import Selenium.
"""
