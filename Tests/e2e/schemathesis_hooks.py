"""Schemathesis hooks for Tests/e2e/test_openapi.py (loaded through SCHEMATHESIS_HOOKS).

A browser keeps a session's cookies between requests: the reader key set by `POST /api/sessions`, the phone key set
by the phone step that claims the session. Schemathesis drops response cookies between generated requests, and
OpenAPI links cannot name these cookies as parameters (their names carry the session's ID: `tandem_reader_<ID>`,
`tandem_phone_<ID>`). This jar plays the browser's part: it keeps every such cookie a response set, and sends a
session's cookies with every later request that names that session, so the stateful phase can follow the links
create → validate-session → input-started → submit as one PC and one phone would. A request that names a session
the jar does not know (all fuzzed IDs) goes out unchanged.
"""

from __future__ import annotations

import threading
from typing import Any

import schemathesis

_jar: dict[str, dict[str, str]] = {}  # session ID → cookie name → value
_lock = threading.Lock()  # schemathesis may run several workers


def _session_of(case: Any) -> str | None:
    query = case.query if isinstance(case.query, dict) else {}
    if isinstance(query.get("session"), str):
        return query["session"]
    body = case.body if isinstance(case.body, dict) else {}
    return body["sessionId"] if isinstance(body.get("sessionId"), str) else None


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    session = _session_of(case)
    with _lock:
        cookies = dict(_jar.get(session, {})) if session is not None else {}
    if cookies:
        case.cookies = {**cookies, **(case.cookies or {})}


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    values = response.headers.get("set-cookie") or response.headers.get("Set-Cookie") or []
    for value in values if isinstance(values, list) else [values]:
        pair = value.split(";", 1)[0]
        name, _, cookie = pair.partition("=")
        for prefix in ("tandem_reader_", "tandem_phone_"):
            if name.startswith(prefix):
                with _lock:
                    _jar.setdefault(name[len(prefix):], {})[name] = cookie
