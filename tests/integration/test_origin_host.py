"""What protects browsers: the Origin and Host allowlists for upgrades,
and the security headers of HTTP answers.

--allowed-origins refuses a page from another site (cross-site WebSocket
hijacking) with 403 {"error": "origin not allowed"} while clients that send
no Origin (not browsers) pass; --allowed-hosts refuses other Host values
with 403. Every answer of the HTTP port carries X-Content-Type-Options:
nosniff, X-Frame-Options: DENY and Cache-Control: no-store; the JSON errors
of the WebSocket port carry nosniff and no-store."""

import json

import pytest
import websockets

from fromaddr import json_error
from harness import run
from rawws import RawClient, http_exchange

APP = "https://app.example"


def upgrade(port, origin=None, host=None, path="/"):
    """A raw upgrade; returns the HttpAnswer (the connection is closed)."""
    c = RawClient(port)
    try:
        headers = [("Origin", origin)] if origin is not None else []
        ans = c.handshake(path=path, host=host, headers=headers, expect=None)
        if ans.status == 101:
            c.send_frame(1, b"ping?")
            assert c.recv_message() == (1, b"ping?")
        return ans
    finally:
        c.close()


@pytest.fixture
def origin_gateway(make_gateway, echo_backend):
    return make_gateway([echo_backend], ["--allowed-origins", APP])


OTHER_ORIGINS = [
    "https://evil.example",
    "http://app.example",           # another scheme is another origin
    "https://app.example:8443",     # another port too
    "https://app.example.evil.example",
    "https://sub.app.example",
    "null",
    "",
]


def test_other_origins_get_403(origin_gateway, echo_backend):
    for origin in OTHER_ORIGINS:
        ans = upgrade(origin_gateway.ws_port, origin=origin)
        assert ans.status == 403, (origin, ans)
        json_error(ans, 403, "origin not allowed")
    assert echo_backend.events("open") == []


def test_allowed_origin_passes_and_reaches_the_backend(origin_gateway, echo_backend):
    assert upgrade(origin_gateway.ws_port, origin=APP).status == 101

    async def body():
        async with websockets.connect(origin_gateway.ws_url(), origin=APP) as ws:
            await ws.send("whoami")
            return json.loads(await ws.recv())

    assert run(body())["headers"]["Origin"] == APP


def test_no_origin_passes(origin_gateway):
    """Non-browser clients send no Origin: nothing to check."""
    assert upgrade(origin_gateway.ws_port).status == 101

    async def body():
        async with websockets.connect(origin_gateway.ws_url()) as ws:
            await ws.send("plain client")
            return await ws.recv()

    assert run(body()) == "plain client"


def test_library_client_with_bad_origin(origin_gateway):
    async def body():
        with pytest.raises(websockets.InvalidStatusCode) as e:
            async with websockets.connect(origin_gateway.ws_url(), origin="https://evil.example"):
                pass
        return e.value.status_code

    assert run(body()) == 403


def test_several_allowed_origins(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--allowed-origins",
                                      "https://a.example,https://b.example:8443"])
    assert upgrade(g.ws_port, origin="https://a.example").status == 101
    assert upgrade(g.ws_port, origin="https://b.example:8443").status == 101
    json_error(upgrade(g.ws_port, origin="https://b.example"), 403, "origin not allowed")
    json_error(upgrade(g.ws_port, origin="https://c.example"), 403, "origin not allowed")


def test_any_origin_without_the_option(make_gateway, echo_backend):
    g = make_gateway([echo_backend])
    assert upgrade(g.ws_port, origin="https://evil.example").status == 101


# ---- Host --------------------------------------------------------------------


def test_allowed_hosts(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--allowed-hosts", "a.example"])
    assert upgrade(g.ws_port, host="a.example").status == 101
    # Host names are case-insensitive.
    assert upgrade(g.ws_port, host="A.Example").status == 101
    for host in ("b.example", "a.example.b.example", "xa.example", f"127.0.0.1:{g.ws_port}"):
        json_error(upgrade(g.ws_port, host=host), 403, "host not allowed")
    assert echo_backend.events("open") and len(echo_backend.events("open")) == 2


def test_several_allowed_hosts(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--allowed-hosts", "a.example,c.example:8080"])
    assert upgrade(g.ws_port, host="a.example").status == 101
    assert upgrade(g.ws_port, host="c.example:8080").status == 101
    json_error(upgrade(g.ws_port, host="c.example"), 403, "host not allowed")
    json_error(upgrade(g.ws_port, host="b.example"), 403, "host not allowed")


def test_origin_and_host_together(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--allowed-origins", APP, "--allowed-hosts", "a.example"])
    assert upgrade(g.ws_port, origin=APP, host="a.example").status == 101
    json_error(upgrade(g.ws_port, origin="https://evil.example", host="a.example"), 403,
               "origin not allowed")
    json_error(upgrade(g.ws_port, origin=APP, host="b.example"), 403, "host not allowed")


# ---- security headers ---------------------------------------------------------


SECURITY = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Cache-Control": "no-store"}


def get(port, path, method="GET", extra=""):
    raw = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n"
    return http_exchange(port, raw.encode())


def assert_security_headers(ans, names=SECURITY):
    for name in names:
        values = [v for k, v in ans.headers if k.lower() == name.lower()]
        assert values == [SECURITY[name]], (name, ans)


ANSWERS = [
    ("GET", "/health", 200),
    ("GET", "/healthz", 200),
    ("HEAD", "/healthz", 200),
    ("GET", "/readyz", 200),
    ("GET", "/", 200),               # the dashboard page
    ("GET", "/metrics", 200),
    ("GET", "/no/such/path", 404),
    ("DELETE", "/health", 405),
    ("GET", "/api/stats", 401),      # no key
    ("POST", "/register", 400),      # no body
]


def test_http_answers_carry_security_headers(gateway):
    for method, path, status in ANSWERS:
        ans = get(gateway.http_port, path, method)
        assert ans.status == status, (method, path, ans)
        assert_security_headers(ans)


def test_http_error_before_routing_carries_security_headers(make_gateway):
    g = make_gateway([], ["--max-header-size", "1KiB"])
    ans = get(g.http_port, "/health", extra="X-Big: " + "b" * 2000 + "\r\n")
    assert ans.status == 431, ans
    assert_security_headers(ans)
    ans = http_exchange(g.http_port, b"NOT HTTP AT ALL\r\n\r\n")
    assert ans.status == 400, ans
    assert_security_headers(ans)


def test_websocket_port_errors_carry_nosniff_and_no_store(origin_gateway):
    ans = upgrade(origin_gateway.ws_port, origin="https://evil.example")
    assert ans.status == 403
    assert_security_headers(ans, ["X-Content-Type-Options", "Cache-Control"])
    ans = get(origin_gateway.ws_port, "/")  # not an upgrade: 426
    assert ans.status == 426, ans
    assert_security_headers(ans, ["X-Content-Type-Options", "Cache-Control"])


def test_http_405_names_the_allowed_methods(gateway):
    for method, path, allow in [("DELETE", "/health", "GET, HEAD"), ("GET", "/register", "POST"),
                                ("PUT", "/drain", "POST")]:
        ans = get(gateway.http_port, path, method)
        assert ans.status == 405, (method, path, ans)
        assert [v for k, v in ans.headers if k.lower() == "allow"] == [allow], ans
