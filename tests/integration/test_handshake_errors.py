"""Every way an upgrade fails before frames flow, each answered with an
HTTP status and a short JSON body {"error": "..."}."""

import json
import time

import pytest

from harness import free_port, wait_for
from rawws import Closed, RawClient, http_exchange

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(port, method="GET", path="/", version="HTTP/1.1", headers=None, drop=()):
    h = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    h.update(headers or {})
    lines = [f"{method} {path} {version}"] + [f"{k}: {v}" for k, v in h.items() if k not in drop]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_error(ans, status):
    assert ans.status == status, ans
    assert "json" in (ans.header("Content-Type") or ""), ans
    body = json.loads(ans.body)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], ans
    return body


# ---- the client's request ------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
        b"\x00\x01\x02\x03\xff\xfe\xfd\r\n\r\n",
        b"HELLO THERE\r\n\r\n",
    ],
    ids=["tls-hello", "binary", "not-http"],
)
def test_garbage_bytes_get_400(gateway, raw):
    assert_error(http_exchange(gateway.ws_port, raw), 400)


def test_malformed_header_line_gets_400(gateway):
    raw = request(gateway.ws_port).replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version 13")
    assert_error(http_exchange(gateway.ws_port, raw), 400)


def test_missing_key_gets_400(gateway):
    assert_error(http_exchange(gateway.ws_port, request(gateway.ws_port, drop=["Sec-WebSocket-Key"])), 400)


@pytest.mark.parametrize("key", ["abc", "not base64 at all!!", "dGhlIHNhbXBsZSBub25jZQ", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="])
def test_bad_key_gets_400(gateway, key):
    raw = request(gateway.ws_port, headers={"Sec-WebSocket-Key": key})
    assert_error(http_exchange(gateway.ws_port, raw), 400)


def test_missing_connection_upgrade_gets_400(gateway):
    assert_error(http_exchange(gateway.ws_port, request(gateway.ws_port, drop=["Connection"])), 400)
    raw = request(gateway.ws_port, headers={"Connection": "keep-alive"})
    assert_error(http_exchange(gateway.ws_port, raw), 400)


def test_http_1_0_gets_400(gateway):
    assert_error(http_exchange(gateway.ws_port, request(gateway.ws_port, version="HTTP/1.0")), 400)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_non_get_gets_405(gateway, method):
    ans = http_exchange(gateway.ws_port, request(gateway.ws_port, method=method))
    assert ans.status == 405, ans
    assert ans.header("Allow") == "GET"
    if method != "HEAD":
        assert_error(ans, 405)


def test_plain_get_gets_426(gateway):
    raw = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{gateway.ws_port}\r\n\r\n".encode()
    assert_error(http_exchange(gateway.ws_port, raw), 426)


def test_upgrade_to_other_protocol_gets_426(gateway):
    raw = request(gateway.ws_port, headers={"Upgrade": "h2c"})
    assert_error(http_exchange(gateway.ws_port, raw), 426)


@pytest.mark.parametrize("version", ["8", "12", "14", "abc"])
def test_wrong_version_gets_426_with_version_13(gateway, version):
    raw = request(gateway.ws_port, headers={"Sec-WebSocket-Version": version})
    ans = http_exchange(gateway.ws_port, raw)
    assert_error(ans, 426)
    assert ans.header("Sec-WebSocket-Version") == "13"


def test_head_over_default_max_header_size_gets_431(gateway):
    raw = request(gateway.ws_port, headers={"X-Big": "a" * (17 * 1024)})
    assert_error(http_exchange(gateway.ws_port, raw), 431)


def test_head_just_under_default_max_header_size_passes(gateway):
    c = RawClient(gateway.ws_port)
    try:
        # About 15.4 KiB in lines of 3,800 bytes: under wsgate's 16 KiB head
        # limit and under the 4,110-byte line limit of the Python backend.
        c.handshake(headers=[(f"X-Big-{i}", "a" * 3800) for i in range(4)])
    finally:
        c.close()


def test_smaller_max_header_size(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--max-header-size", "1KiB"])
    raw = request(g.ws_port, headers={"X-Big": "a" * 1500})
    assert_error(http_exchange(g.ws_port, raw), 431)
    c = RawClient(g.ws_port)
    try:
        c.handshake(headers=[("X-Small", "a" * 500)])
    finally:
        c.close()


def test_many_small_headers_over_the_limit_get_431(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--max-header-size", "2KiB"])
    raw = request(g.ws_port, headers={f"X-H{i}": "v" * 20 for i in range(200)})
    assert_error(http_exchange(g.ws_port, raw), 431)


def test_incomplete_request_gets_408(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--handshake-timeout", "500ms"])
    c = RawClient(g.ws_port, timeout=5)
    try:
        c.send(request(g.ws_port)[:40])  # never finished
        t0 = time.monotonic()
        ans = c.read_http(timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert_error(ans, 408)
    assert 0.3 <= elapsed <= 2.5, elapsed


def test_request_in_single_bytes_is_accepted(gateway):
    """A request that trickles in (within --handshake-timeout) is fine."""
    c = RawClient(gateway.ws_port)
    try:
        for b in request(gateway.ws_port):
            c.send(bytes([b]))
        ans = c.read_http()
        assert ans.status == 101, ans
    finally:
        c.close()


def test_header_names_and_tokens_are_case_insensitive(gateway):
    raw = request(gateway.ws_port, headers={"Upgrade": "WebSocket",
                                            "Connection": "keep-alive, UPGRADE"})
    raw = raw.replace(b"Sec-WebSocket-Key", b"sec-websocket-key").replace(b"Host:", b"HOST:")
    c = RawClient(gateway.ws_port)
    try:
        c.send(raw)
        ans = c.read_http()
        assert ans.status == 101, ans
    finally:
        c.close()


def test_frames_sent_before_the_101_are_delivered(gateway):
    """A client may send its first frame right behind its request."""
    from rawws import OP_TEXT, encode_frame

    c = RawClient(gateway.ws_port)
    try:
        c.send(request(gateway.ws_port) + encode_frame(OP_TEXT, b"early bird"))
        assert c.read_http().status == 101
        assert c.recv_message() == (OP_TEXT, b"early bird")
    finally:
        c.close()


# ---- the backend side ----------------------------------------------------


def test_no_backend_configured_gets_503(make_gateway):
    g = make_gateway([])
    ans = http_exchange(g.ws_port, request(g.ws_port))
    body = assert_error(ans, 503)
    assert body == {"error": "NO SERVER AVAILABLE"}


def test_unreachable_backend_gets_502(make_gateway):
    dead = free_port()  # nothing listens here
    g = make_gateway([f"127.0.0.1:{dead}"])
    assert_error(http_exchange(g.ws_port, request(g.ws_port)), 502)


def test_garbage_handshake_answer_gets_502(make_gateway, make_backend):
    g = make_gateway([make_backend("garbage")])
    assert_error(http_exchange(g.ws_port, request(g.ws_port)), 502)


def test_wrong_accept_gets_502(make_gateway, make_backend):
    b = make_backend("badaccept")
    g = make_gateway([b])
    assert_error(http_exchange(g.ws_port, request(g.ws_port)), 502)
    # The backend saw a request with a key of the gateway's own.
    keys = b.wait_event("key")
    assert keys[0]["key"] and keys[0]["key"] != KEY


def test_backend_hanging_up_during_handshake_gets_502(make_gateway, make_backend):
    g = make_gateway([make_backend("hangup")])
    assert_error(http_exchange(g.ws_port, request(g.ws_port)), 502)


def test_client_that_sends_nothing_is_dropped(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--handshake-timeout", "500ms"])
    c = RawClient(g.ws_port, timeout=5)
    try:
        t0 = time.monotonic()
        try:
            ans = c.read_http(timeout=5)
            assert ans.status == 408, ans
        except Closed:
            pass  # a silent connection may also be closed without an answer
        assert time.monotonic() - t0 <= 2.5
    finally:
        c.close()
    wait_for(lambda: g.connections() == 0, 5, what="the connection to be released")


def test_silent_backend_gets_504_after_upstream_timeout(make_gateway, make_backend):
    b = make_backend("silent")
    g = make_gateway([b], ["--upstream-timeout", "1s"])
    t0 = time.monotonic()
    ans = http_exchange(g.ws_port, request(g.ws_port), timeout=8)
    elapsed = time.monotonic() - t0
    assert_error(ans, 504)
    assert 0.8 <= elapsed <= 3.0, elapsed
    b.wait_event("tcp-open")


def test_backend_refusal_reaches_the_client(make_gateway, make_backend):
    g = make_gateway([make_backend("reject")])
    ans = http_exchange(g.ws_port, request(g.ws_port))
    assert ans.status == 403, ans
    assert ans.body == b"backend refuses you\n"


def test_backend_refusal_from_library_client(make_gateway, make_backend):
    import asyncio

    import websockets

    g = make_gateway([make_backend("reject")])

    async def body():
        with pytest.raises(websockets.InvalidStatusCode) as e:
            async with websockets.connect(g.ws_url()):
                pass
        return e.value.status_code

    assert asyncio.run(asyncio.wait_for(body(), 10)) == 403


def test_gateway_keeps_serving_after_errors(gateway):
    """A run of refused handshakes leaves the gateway healthy and working."""
    for raw in (b"\x00\xff\r\n\r\n", request(gateway.ws_port, method="POST"),
                request(gateway.ws_port, drop=["Sec-WebSocket-Key"])):
        try:
            http_exchange(gateway.ws_port, raw)
        except Closed:
            pass
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
    finally:
        c.close()
    assert gateway.get("/healthz").status_code == 200
