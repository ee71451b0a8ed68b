"""Clients from a chosen loopback address, for the per-address limits.

Linux routes all of 127.0.0.0/8 to the loopback interface, so a client
socket bound to 127.0.0.2 before connecting reaches a gateway listening on
127.0.0.1 and is seen as another address. The harness polls the gateway
from 127.0.0.1; the limited clients of a test use other addresses so that
its polling never spends their tokens.
"""

import json

import websockets

from rawws import RawClient

HOST = "127.0.0.1"


def raw_from(port, source, timeout=5.0):
    """A RawClient connected to the gateway from `source`."""
    c = RawClient(port, timeout=timeout, connect=False)
    c.sock.bind((source, 0))
    c.sock.connect((HOST, port))
    return c


def upgrade_from(port, source, keep=False, timeout=5.0, **kw):
    """An upgrade request from `source`; returns the HttpAnswer, and the
    client too when keep=True (the caller closes it)."""
    c = raw_from(port, source, timeout)
    try:
        ans = c.handshake(expect=None, timeout=timeout, **kw)
    except BaseException:
        c.close()
        raise
    if keep:
        return ans, c
    c.close()
    return ans


def http_from(port, source, path="/healthz", method="GET", headers=(), body=None, timeout=5.0,
              client=None):
    """One HTTP request from `source` (on `client` when given, kept alive;
    else on a new connection that is closed after). A dict body is sent
    as JSON. Returns the HttpAnswer."""
    c = client or raw_from(port, source, timeout)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    if client is None:
        lines.append("Connection: close")
    lines += [f"{k}: {v}" for k, v in headers]
    data = b""
    if body is not None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    try:
        c.send(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        return c.read_http(timeout=timeout)
    finally:
        if client is None:
            c.close()


def ws_from(url, source, **kw):
    """websockets.connect from `source` (use with `async with`/await)."""
    kw.setdefault("open_timeout", 5)
    return websockets.connect(url, local_addr=(source, 0), **kw)


def json_error(ans, status, message=None):
    """Asserts an HTTP error answer with a JSON {"error": ...} body;
    returns the body."""
    assert ans.status == status, ans
    assert "json" in (ans.header("Content-Type") or ""), ans
    body = json.loads(ans.body)
    assert isinstance(body.get("error"), str) and body["error"], ans
    if message is not None:
        assert body["error"] == message, ans
    return body
