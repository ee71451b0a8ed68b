"""Request headers toward the backend: X-Forwarded-For / -Proto and
X-Real-IP set by wsgate, end-to-end headers passed, hop-by-hop removed."""

import json

import websockets

from harness import run
from rawws import OP_TEXT, RawClient


async def whoami(url, **kw):
    async with websockets.connect(url, **kw) as ws:
        await ws.send("whoami")
        return json.loads(await ws.recv())


def raw_whoami(port, headers=(), host=None):
    c = RawClient(port)
    try:
        c.handshake("/who", host=host, headers=headers)
        c.send_frame(OP_TEXT, b"whoami")
        op, data = c.recv_message()
        assert op == OP_TEXT
        return json.loads(data)
    finally:
        c.close()


def names_sent(info):
    return [k.lower() for k, _ in info["all"]]


def test_forwarding_headers_are_set(gateway):
    info = run(whoami(gateway.ws_url()))
    h = info["headers"]
    assert h["X-Forwarded-For"] == "127.0.0.1"
    assert h["X-Forwarded-Proto"] == "http"
    assert h["X-Real-IP"] == "127.0.0.1"


def test_untrusted_forwarding_headers_are_replaced(gateway):
    info = raw_whoami(gateway.ws_port, [
        ("X-Forwarded-For", "10.1.1.1, 10.2.2.2"),
        ("X-Forwarded-Proto", "https"),
        ("X-Real-IP", "6.6.6.6"),
    ])
    h = info["headers"]
    assert h["X-Forwarded-For"] == "127.0.0.1"
    assert h["X-Forwarded-Proto"] == "http"
    assert h["X-Real-IP"] == "127.0.0.1"
    # Exactly one of each: the client's copies are gone, not kept beside ours.
    sent = names_sent(info)
    for name in ("x-forwarded-for", "x-forwarded-proto", "x-real-ip"):
        assert sent.count(name) == 1, info["all"]


def test_trusted_proxy_forwarded_for_is_appended(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--trusted-proxies", "127.0.0.1"])
    info = raw_whoami(g.ws_port, [("X-Forwarded-For", "10.1.1.1")])
    h = info["headers"]
    assert h["X-Forwarded-For"] == "10.1.1.1, 127.0.0.1"
    assert h["X-Real-IP"] in ("10.1.1.1", "127.0.0.1")
    assert names_sent(info).count("x-forwarded-for") == 1


def test_trusted_proxy_as_cidr(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--trusted-proxies", "10.0.0.0/8,127.0.0.0/8"])
    info = raw_whoami(g.ws_port, [("X-Forwarded-For", "192.0.2.7")])
    assert info["headers"]["X-Forwarded-For"] == "192.0.2.7, 127.0.0.1"


def test_other_trusted_proxy_does_not_make_loopback_trusted(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--trusted-proxies", "10.9.9.9"])
    info = raw_whoami(g.ws_port, [("X-Forwarded-For", "192.0.2.7")])
    assert info["headers"]["X-Forwarded-For"] == "127.0.0.1"


def test_end_to_end_headers_reach_the_backend(gateway):
    info = raw_whoami(
        gateway.ws_port,
        [
            ("Cookie", "session=abc123; theme=dark"),
            ("Authorization", "Bearer token-xyz"),
            ("Origin", "https://app.example.test"),
            ("User-Agent", "wsgate-tests/1.0"),
            ("X-Request-Id", "req-42"),
            ("X-Custom-Thing", "value with spaces"),
        ],
        host="chat.example.test:8443",
    )
    h = info["headers"]
    assert h["Host"] == "chat.example.test:8443"
    assert h["Cookie"] == "session=abc123; theme=dark"
    assert h["Authorization"] == "Bearer token-xyz"
    assert h["Origin"] == "https://app.example.test"
    assert h["User-Agent"] == "wsgate-tests/1.0"
    assert info["x_headers"]["X-Request-Id"] == "req-42"
    assert info["x_headers"]["X-Custom-Thing"] == "value with spaces"


def test_end_to_end_headers_from_a_library_client(gateway):
    info = run(whoami(
        gateway.ws_url("/lib"),
        origin="http://origin.example.test",
        user_agent_header="lib-agent/2",
        extra_headers={"Cookie": "a=b", "Authorization": "Basic dTpw", "X-Trace": "t-1"},
    ))
    h = info["headers"]
    assert h["Host"] == f"127.0.0.1:{gateway.ws_port}"
    assert h["Origin"] == "http://origin.example.test"
    assert h["User-Agent"] == "lib-agent/2"
    assert h["Cookie"] == "a=b"
    assert h["Authorization"] == "Basic dTpw"
    assert info["x_headers"]["X-Trace"] == "t-1"


def test_hop_by_hop_headers_do_not_reach_the_backend(gateway):
    info = raw_whoami(gateway.ws_port, [
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Proxy-Authorization", "Basic c2VjcmV0"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Kept", "yes"),
    ])
    sent = names_sent(info)
    for name in ("keep-alive", "te", "trailer", "proxy-authorization", "proxy-connection"):
        assert name not in sent, info["all"]
    assert info["x_headers"]["X-Kept"] == "yes"


def test_headers_named_in_connection_are_hop_by_hop(gateway):
    """RFC 9110 7.6.1: a header the Connection header names is hop-by-hop."""
    c = RawClient(gateway.ws_port)
    try:
        c.handshake("/who", connection="Upgrade, X-Hop-Secret",
                    headers=[("X-Hop-Secret", "do-not-forward"), ("X-Kept", "yes")])
        c.send_frame(OP_TEXT, b"whoami")
        op, data = c.recv_message()
        info = json.loads(data)
    finally:
        c.close()
    assert "x-hop-secret" not in names_sent(info), info["all"]
    assert info["x_headers"]["X-Kept"] == "yes"
