"""The phone's requests: `validate`, `input_started` and `submit` go through an `httpx.Client` or a node;
`expect_*` check their answers."""

from __future__ import annotations

import secrets
from typing import Any, Callable

import httpx

from tandem_e2e.nodes import Node, Target

NAME = "山田太郎"
PHONE = "090-1234-5678"


def _no_context() -> str:
    return ""


def new_session_id(prefix: str = "sess") -> str:
    return f"{prefix}_" + secrets.token_hex(8)


# The phone: the first phone call to a session claims it and gets a phone key cookie (first scan wins). Requests made
# through a node (a client of their own) are one phone per session, whatever node they go to: its cookies are kept
# here. A test that needs a second phone passes an httpx.Client of its own.
_PHONE_COOKIES: dict[str, str] = {}


def _request(target: httpx.Client | Target, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request through `target`: an open client, or a node (a client of its own, closed afterwards)."""
    if isinstance(target, httpx.Client):
        return target.request(method, path, **kwargs)
    with target.client() as client:
        for name, value in _PHONE_COOKIES.items():
            client.cookies.set(name, value)
        response = client.request(method, path, **kwargs)
        for name, value in response.cookies.items():
            if name.startswith("tandem_phone_"):
                _PHONE_COOKIES[name] = value
        return response


def phone_cookie(session_id: str) -> str | None:
    """`name=value` of the phone key cookie that the phone's requests through a node got for this session, if any."""
    name = f"tandem_phone_{session_id}"
    return f"{name}={_PHONE_COOKIES[name]}" if name in _PHONE_COOKIES else None


def validate(target: httpx.Client | Target, session_id: str, token: str | None = None) -> httpx.Response:
    """validate-session; `token` is the QR code's pairing token, which a session made by POST /api/sessions needs."""
    params = {"session": session_id} if token is None else {"session": session_id, "t": token}
    return _request(target, "GET", "/api/validate-session", params=params)


def input_started(target: httpx.Client | Target, session_id: str) -> httpx.Response:
    return _request(target, "POST", "/api/input-started", json={"sessionId": session_id})


def submit(target: httpx.Client | Target, session_id: str, name: str = NAME, phone: str = PHONE) -> httpx.Response:
    return _request(target, "POST", "/api/submit", json={"sessionId": session_id, "name": name, "phone": phone})


def expect_ok(response: httpx.Response, what: str, context: Callable[[], str] = _no_context) -> Any:
    """The JSON body of a 200; `context()` (a node's log, say) is added to the message of any other status."""
    assert response.status_code == 200, f"{what}: {response.status_code} {response.text}\n{context()}"
    return response.json()


def _context_of(target: httpx.Client | Target, context: Callable[[], str] | None) -> Callable[[], str]:
    if context is not None:
        return context
    return target.log if isinstance(target, Node) else _no_context


def expect_valid(
    target: httpx.Client | Target, session_id: str, context: Callable[[], str] | None = None, token: str | None = None,
) -> None:
    """validate-session answers 200 with `valid: true` (a node's log, or `context()`, goes into the message)."""
    body = expect_ok(validate(target, session_id, token), f"validate-session {session_id}", _context_of(target, context))
    assert body["valid"] is True, body


def expect_input_started(target: httpx.Client | Target, session_id: str, context: Callable[[], str] | None = None) -> None:
    body = expect_ok(input_started(target, session_id), f"input-started {session_id}", _context_of(target, context))
    assert body == {"success": True}, body


def expect_submitted(
    target: httpx.Client | Target, session_id: str, name: str = NAME, phone: str = PHONE,
    context: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """submit answers 200 with `success: true`; returns the body."""
    body = expect_ok(submit(target, session_id, name, phone), f"submit {session_id}", _context_of(target, context))
    assert body["success"] is True, body
    return body
