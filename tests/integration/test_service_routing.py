"""Routing by service on the HTTP port (seed 002's shapes): /ws/:service,
/api/:service/* and /sse/:service/*, against real backends of two or more
services configured with UPSTREAMS."""
import asyncio
import json
import os
import socket
import threading
import time

import pytest
import requests
import websockets

from harness import run, wait_for
from http_backends import HttpBackend


@pytest.fixture
def http_backend():
    started = []

    def make(name, **kw):
        b = HttpBackend(name, **kw)
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


def upstreams(**services):
    return json.dumps({name: [b.url if isinstance(b, HttpBackend) else f"ws://{b.addr}"
                              for b in members] for name, members in services.items()})


@pytest.fixture
def api_gateway(make_gateway, http_backend):
    """users: one HTTP backend; billing: two."""
    users = http_backend("users1")
    billing = [http_backend("billing1"), http_backend("billing2")]
    gw = make_gateway(env={"UPSTREAMS": upstreams(users=[users], billing=billing)})
    gw.users, gw.billing = users, billing
    return gw


def raw_request(gw, data, read_until_close=True, timeout=5.0):
    """Sends raw bytes to the HTTP port; returns what came back until the
    close (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", gw.http_port), timeout=timeout)
    s.sendall(data)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if not read_until_close and b"\r\n\r\n" in out:
                break
    except socket.timeout:
        pass
    s.close()
    return out


def header(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


# ---- /ws/:service ---------------------------------------------------------

def whoami(url, **kw):
    async def go():
        async with websockets.connect(url, **kw) as ws:
            await ws.send("whoami")
            return json.loads(await ws.recv())
    return run(go())


def test_ws_route_reaches_the_service_and_path(make_gateway, make_backend):
    chat, feed = make_backend("echo", "chat1"), make_backend("echo", "feed1")
    gw = make_gateway(env={"UPSTREAMS": upstreams(chat=[chat], feed=[feed])})
    base = f"ws://127.0.0.1:{gw.http_port}"
    got = whoami(base + "/ws/chat?path=/rooms/1&clientId=a&x=1")
    assert got["backend"] == "chat1"
    assert got["path"] == "/rooms/1?clientId=a&x=1"
    got = whoami(base + "/ws/feed?path=%2Flive%3Fv%3D2&clientId=b")
    assert got["backend"] == "feed1"
    assert got["path"] == "/live?v=2&clientId=b"
    assert whoami(base + "/ws/feed")["path"] == "/"
    long = "v" * 3000  # targets are not limited below the head size
    assert whoami(base + f"/ws/feed?path=/l&k={long}")["path"] == f"/l?k={long}"
    # The WebSocket port still goes to the default service, path unchanged.
    with pytest.raises(websockets.InvalidStatusCode) as e:
        whoami(gw.ws_url("/ws/chat?path=/x"))
    assert e.value.status_code == 503  # the default service has no backend


def test_ws_route_is_sticky_and_balanced(make_gateway, make_backend):
    a, b = make_backend("echo", "chatA"), make_backend("echo", "chatB")
    gw = make_gateway(env={"UPSTREAMS": upstreams(chat=[a, b])})
    base = f"ws://127.0.0.1:{gw.http_port}/ws/chat?path=/s"
    first = [whoami(base + f"&clientId=c{i}")["backend"] for i in range(6)]
    assert set(first) == {"chatA", "chatB"}
    again = [whoami(base + f"&clientId=c{i}")["backend"] for i in range(6)]
    assert again == first


def test_ws_route_errors(make_gateway, make_backend):
    chat = make_backend("echo", "chat1")
    gw = make_gateway(env={"UPSTREAMS": upstreams(chat=[chat])})
    base = f"ws://127.0.0.1:{gw.http_port}"
    for path, status in [("/ws/nope?path=/", 404), ("/ws/stats?path=/", 404),
                         ("/ws/chat?path=relative", 400), ("/ws/chat?path=/a%0d%0ab", 400)]:
        with pytest.raises(websockets.InvalidStatusCode) as e:
            whoami(base + path)
        assert e.value.status_code == status, path
    # A plain GET of a WebSocket route is refused as on WS_PORT.
    r = requests.get(gw.http_url("/ws/chat?path=/"), timeout=5)
    assert r.status_code == 426
    # The HTTP port still serves its own routes on the same connection type.
    assert gw.get("/healthz").status_code == 200


def test_ws_route_moves_when_the_backend_dies(make_gateway, make_backend):
    a, b = make_backend("echo", "chatA"), make_backend("echo", "chatB")
    gw = make_gateway(env={"UPSTREAMS": upstreams(chat=[a, b])},
                      args=["--health-interval", "200ms", "--health-fall", "1"])
    url = f"ws://127.0.0.1:{gw.http_port}/ws/chat?path=/m&clientId=mover"

    async def go():
        async with websockets.connect(url) as ws:
            await ws.send("whoami")
            first = json.loads(await ws.recv())["backend"]
            (a if first == "chatA" else b).stop()
            await asyncio.sleep(1.5)
            await ws.send("whoami")
            second = json.loads(await ws.recv())
            return first, second
    first, second = run(go(), timeout=20)
    assert second["backend"] != first
    assert second["path"] == "/m?clientId=mover"


# ---- /api/:service --------------------------------------------------------

def test_api_get_strips_the_prefix_and_sets_forwarding_headers(api_gateway):
    r = requests.get(api_gateway.http_url("/api/users/echo/v1/x?q=1&r=a%20b"),
                     headers={"X-Custom": "yes", "Connection": "X-Drop", "X-Drop": "1",
                              "X-Forwarded-For": "6.6.6.6", "Proxy-Authorization": "x"},
                     timeout=5)
    assert r.status_code == 200
    seen = r.json()
    assert seen["backend"] == "users1"
    assert seen["path"] == "/echo/v1/x?q=1&r=a%20b"
    h = seen["headers"]
    assert header(h, "Host") == [f"127.0.0.1:{api_gateway.http_port}"]
    assert header(h, "X-Custom") == ["yes"]
    assert header(h, "X-Drop") == [] and header(h, "Proxy-Authorization") == []
    assert header(h, "X-Forwarded-For") == ["127.0.0.1"]  # loopback is no trusted proxy
    assert header(h, "X-Forwarded-Proto") == ["http"]
    assert header(h, "X-Real-IP") == ["127.0.0.1"]
    assert header(h, "Connection") == ["close"]
    # Bare prefix and prefix with a query.
    assert requests.get(api_gateway.http_url("/api/users"), timeout=5).json()["path"] == "/"
    assert requests.get(api_gateway.http_url("/api/users?z=9"), timeout=5).json()["path"] == "/?z=9"


def test_api_trusted_proxy_extends_forwarded_for(make_gateway, http_backend):
    users = http_backend("users1")
    gw = make_gateway(env={"UPSTREAMS": upstreams(users=[users])},
                      args=["--trusted-proxies", "127.0.0.0/8"])
    r = requests.get(gw.http_url("/api/users/echo"),
                     headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
                     timeout=5)
    h = r.json()["headers"]
    assert header(h, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert header(h, "X-Forwarded-Proto") == ["https"]
    assert header(h, "X-Real-IP") == ["203.0.113.9"]


def test_api_post_bodies_content_length_and_chunked(api_gateway):
    body = b"a" * 100_000
    r = requests.post(api_gateway.http_url("/api/users/echo"), data=body, timeout=5)
    seen = r.json()
    assert seen["method"] == "POST" and seen["body_len"] == len(body)
    assert header(seen["headers"], "Content-Length") == [str(len(body))]

    def gen():
        for i in range(10):
            yield b"chunk-%d;" % i
    r = requests.put(api_gateway.http_url("/api/users/echo"), data=gen(), timeout=5)
    seen = r.json()
    assert seen["method"] == "PUT"
    assert seen["body_len"] == len(b"".join(gen()))
    assert header(seen["headers"], "Transfer-Encoding") == ["chunked"]
    for method in ("DELETE", "PATCH", "OPTIONS"):
        r = requests.request(method, api_gateway.http_url("/api/users/echo"), timeout=5)
        assert r.json()["method"] == method
    r = requests.head(api_gateway.http_url("/api/users/echo"), timeout=5)
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) > 0


def test_api_answer_framings_and_hop_by_hop(api_gateway):
    r = requests.get(api_gateway.http_url("/api/users/chunked"), timeout=5)
    assert r.content == b"one,two,three"
    r = requests.get(api_gateway.http_url("/api/users/close"), timeout=5)
    assert r.content == b"until the close"
    assert r.headers.get("Transfer-Encoding") == "chunked"  # so the client knows the end
    r = requests.get(api_gateway.http_url("/api/users/hop"), timeout=5)
    assert r.headers["X-End"] == "kept"
    for name in ("X-Secret-Hop", "Keep-Alive", "Proxy-Authenticate"):
        assert name not in r.headers
    r = requests.get(api_gateway.http_url("/api/users/status?code=418"), timeout=5)
    assert r.status_code == 418 and r.json() == {"status": True}


def test_api_keep_alive_across_requests(api_gateway):
    with requests.Session() as s:
        ports = set()
        for i in range(5):
            r = s.get(api_gateway.http_url(f"/api/users/echo/{i}"), stream=True, timeout=5)
            ports.add(r.raw._connection.sock.getsockname()[1])
            assert r.json()["path"] == f"/echo/{i}"
        r = s.post(api_gateway.http_url("/api/billing/echo"), data=b"x" * 1000, stream=True,
                   timeout=5)
        ports.add(r.raw._connection.sock.getsockname()[1])
        assert r.json()["body_len"] == 1000
        r = s.get(api_gateway.http_url("/healthz"), stream=True, timeout=5)
        ports.add(r.raw._connection.sock.getsockname()[1])
        assert r.status_code == 200
        assert len(ports) == 1, "one client connection for every request"


def test_api_pipelined_requests(api_gateway):
    req = (b"GET /api/users/echo/1 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /api/users/echo/2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
           b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = raw_request(api_gateway, req)
    assert out.count(b"HTTP/1.1 200") == 3
    assert b'"/echo/1"' in out and b'"/echo/2"' in out and b'"body_len": 3' in out


def test_api_round_robin_across_two_backends(api_gateway):
    seen = [requests.get(api_gateway.http_url("/api/billing/echo"), timeout=5).json()["backend"]
            for _ in range(10)]
    assert seen.count("billing1") == 5 and seen.count("billing2") == 5
    assert all(r["backend"].startswith("users") for r in api_gateway.users.requests)


def test_api_dead_backend_is_skipped(api_gateway):
    api_gateway.billing[1].stop()
    seen = [requests.get(api_gateway.http_url("/api/billing/echo"), timeout=5).json()["backend"]
            for _ in range(6)]
    assert seen == ["billing1"] * 6
    api_gateway.wait_log(r"backend unreachable .*connection refused")


def test_api_sticky_by_client_id(api_gateway):
    for cid in ("alice", "bob", "carol"):
        got = {requests.get(api_gateway.http_url(f"/api/billing/echo?clientId={cid}"),
                            timeout=5).json()["backend"] for _ in range(4)}
        assert len(got) == 1, cid


def test_api_errors(make_gateway, http_backend):
    users = http_backend("users1")
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    gw = make_gateway(env={"UPSTREAMS": json.dumps({
        "users": [users.url], "ghost": [f"http://127.0.0.1:{dead_port}"]})},
        args=["--upstream-timeout", "700ms"])
    r = requests.get(gw.http_url("/api/nope/x"), timeout=5)
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = requests.get(gw.http_url("/api/ghost/x"), timeout=5)
    assert r.status_code in (502, 503), r.text
    assert "error" in r.json()
    r = requests.get(gw.http_url("/api/users/garbage"), timeout=5)
    assert r.status_code == 502 and r.json()["error"]
    r = requests.get(gw.http_url("/api/users/slow?ms=2000"), timeout=5)
    assert r.status_code == 504 and r.json()["error"]
    # Admin names keep their meaning.
    assert requests.post(gw.http_url("/api/login"), json={}, timeout=5).status_code in (400, 401)
    assert requests.get(gw.http_url("/api/stats"), timeout=5).status_code == 401
    assert requests.get(gw.http_url("/api/stats/x"), timeout=5).status_code == 404
    # Oversized head: 431 as for any request.
    r = requests.get(gw.http_url("/api/users/echo"), headers={"X-Big": "a" * 20000}, timeout=5)
    assert r.status_code == 431
    out = raw_request(gw, b"GET /api/users/echo HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    # Smuggling shapes: both framings, two lengths, a coding under chunked.
    for head in (b"Content-Length: 5\r\nTransfer-Encoding: chunked",
                 b"Content-Length: 5\r\nContent-Length: 6"):
        out = raw_request(gw, b"POST /api/users/echo HTTP/1.1\r\nHost: x\r\n" + head +
                          b"\r\n\r\n0\r\n\r\nGET /api/users/echo/smuggled HTTP/1.1\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400"), out[:100]
    out = raw_request(gw, b"POST /api/users/echo HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 501")
    assert not [r for r in users.requests if "smuggled" in r["path"]]
    # After all that, the gateway still serves.
    assert requests.get(gw.http_url("/api/users/echo"), timeout=5).status_code == 200


def test_api_no_backend_is_503(make_gateway):
    gw = make_gateway(env={"UPSTREAMS": json.dumps({"empty": []})})
    r = requests.get(gw.http_url("/api/empty/x"), timeout=5)
    assert r.status_code == 503
    assert r.json()["error"] == "NO SERVER AVAILABLE"


def test_api_backend_dying_mid_body_is_never_complete(api_gateway):
    # Content-Length: the client gets fewer bytes than announced, then the close.
    out = raw_request(api_gateway, b"GET /api/users/die HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Content-Length: 1000" in head and len(body) == 100
    # Chunked: the last chunk never comes, so no client takes it as complete.
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(api_gateway.http_url("/api/users/die-chunked"), timeout=5)
    api_gateway.wait_log(r"http request failed .*middle of the body", count=2)
    assert requests.get(api_gateway.http_url("/api/users/echo"), timeout=5).status_code == 200


def test_api_client_leaving_mid_request(api_gateway):
    s = socket.create_connection(("127.0.0.1", api_gateway.http_port))
    s.sendall(b"POST /api/users/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
              + b"z" * 1000)
    time.sleep(0.3)
    s.close()
    wait_for(lambda: requests.get(api_gateway.http_url("/api/users/echo"), timeout=5).ok, 5)


def test_api_large_upload_streams_with_bounded_memory(make_gateway, http_backend):
    slow = http_backend("slow", read_delay=0.004)
    gw = make_gateway(env={"UPSTREAMS": upstreams(up=[slow])}, args=["--threads", "1"])
    before = gw.rss_kib()
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], gw.rss_kib())
            time.sleep(0.05)
    t = threading.Thread(target=sample)
    t.start()
    size = 20 * 1024 * 1024
    try:
        r = requests.post(gw.http_url("/api/up/echo"), data=b"u" * size, timeout=60)
        def gen():
            block = b"v" * 65536
            for _ in range(size // len(block)):
                yield block
        r2 = requests.post(gw.http_url("/api/up/echo"), data=gen(), timeout=60)
        r3 = requests.get(gw.http_url(f"/api/up/big?n={size}"), stream=True, timeout=60)
        got = 0
        for part in r3.iter_content(65536):
            got += len(part)
            time.sleep(0.001)
    finally:
        stop.set()
        t.join()
    assert r.json()["body_len"] == size
    assert r2.json()["body_len"] == size
    assert got == size
    # AddressSanitizer keeps freed memory in quarantine (256 MiB), so RSS
    # says nothing about buffering in a sanitized build.
    if not os.environ.get("WSGATE_SANITIZED"):
        assert peak[0] - before < 12 * 1024, f"RSS grew {peak[0] - before} KiB for a 20 MiB body"


def test_api_slow_client_stops_the_backend(make_gateway, http_backend):
    big = http_backend("big")
    gw = make_gateway(env={"UPSTREAMS": upstreams(big=[big])},
                      args=["--write-high-water", "1MiB", "--threads", "1"])
    before = gw.rss_kib()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.connect(("127.0.0.1", gw.http_port))
    s.sendall(b"GET /api/big/big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (500 * 1024 * 1024))

    def stalled():
        a = big.sent
        time.sleep(0.3)
        return a > 0 and big.sent == a

    # The client reads nothing: the backend must stop far below 500 MiB.
    wait_for(stalled, 15, interval=0, what="the backend's writes to stall")
    assert big.sent < 32 * 1024 * 1024, big.sent
    if not os.environ.get("WSGATE_SANITIZED"):
        assert gw.rss_kib() - before < 16 * 1024
    # Reading resumes the flow.
    got = 0
    while got < 8 * 1024 * 1024:
        got += len(s.recv(1 << 20))
    wait_for(lambda: big.sent > 8 * 1024 * 1024, 10, what="the backend to go on")
    s.close()


def test_api_requests_share_the_request_rate_limit(make_gateway, http_backend):
    users = http_backend("users1")
    gw = make_gateway(env={"UPSTREAMS": upstreams(users=[users])},
                      args=["--rate-limit-requests", 1, "--rate-limit-request-burst", 3,
                            "--rate-limit-exempt", ""])
    codes = [requests.get(gw.http_url("/api/users/echo"), timeout=5).status_code
             for _ in range(6)]
    # (the readiness probes at start took some of the burst)
    assert codes[0] == 200 and codes[-1] == 429, codes
    r = requests.post(gw.http_url("/api/users/echo"), data=b"b" * 5000, timeout=5)
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_api_metrics_count_requests_by_class(api_gateway):
    requests.get(api_gateway.http_url("/api/users/echo"), timeout=5)
    requests.get(api_gateway.http_url("/api/users/status?code=404"), timeout=5)
    requests.get(api_gateway.http_url("/api/nope/x"), timeout=5)
    text = api_gateway.get("/metrics").text
    lines = [l for l in text.splitlines() if l.startswith("wsgate_backend_http_requests_total")
             and 'service="users"' in l]
    values = {l.split('code="')[1][:3]: float(l.rsplit(" ", 1)[1]) for l in lines}
    assert values["2xx"] >= 1 and values["4xx"] >= 1
    assert any(l.startswith("wsgate_http_proxy_refused_total 1") for l in text.splitlines())
    bytes_lines = [l for l in text.splitlines() if l.startswith("wsgate_backend_bytes_total")
                   and 'service="users"' in l]
    assert all(float(l.rsplit(" ", 1)[1]) > 0 for l in bytes_lines)


# ---- /sse/:service --------------------------------------------------------

def test_sse_events_arrive_one_by_one(api_gateway):
    r = requests.get(api_gateway.http_url("/sse/users/events?n=4&ms=400"), stream=True,
                     timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/event-stream"
    start = time.monotonic()
    arrivals = []
    for line in r.iter_lines(chunk_size=1):
        if line.startswith(b"data:"):
            arrivals.append((time.monotonic() - start, line))
    assert [a[1] for a in arrivals] == [b"data: event %d" % i for i in range(4)]
    # The first event is there long before the stream ends (about 1.6 s).
    assert arrivals[0][0] < 1.0
    assert arrivals[-1][0] - arrivals[0][0] > 0.8


def test_sse_is_not_cut_by_the_upstream_timeout(make_gateway, http_backend):
    users = http_backend("users1")
    gw = make_gateway(env={"UPSTREAMS": upstreams(users=[users])},
                      args=["--upstream-timeout", "500ms"])
    r = requests.get(gw.http_url("/sse/users/events?n=3&ms=700"), stream=True, timeout=10)
    events = [l for l in r.iter_lines(chunk_size=1) if l.startswith(b"data:")]
    assert len(events) == 3


def test_sse_client_disconnect_closes_the_backend_stream(api_gateway):
    s = socket.create_connection(("127.0.0.1", api_gateway.http_port))
    s.sendall(b"GET /sse/users/events?n=0&ms=100 HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while got.count(b"data:") < 2:
        got += s.recv(4096)
    s.close()
    assert api_gateway.users.stream_closed.wait(10), "backend stream still open"


# ---- registered backends and reserved names -------------------------------

def test_registered_backend_http_port_and_ws_port(make_gateway, make_backend, http_backend):
    api = http_backend("reg-http")
    ws = make_backend("echo", "reg-ws")
    gw = make_gateway()
    r = requests.post(gw.http_url("/register"), json={
        "id": "reg-1", "host": "127.0.0.1", "port": api.port, "wsPort": ws.port,
        "service": "orders", "authKey": gw.key}, timeout=5)
    assert r.json()["success"] is True
    # HTTP goes to the registered `port`, WebSocket to `wsPort`.
    assert requests.get(gw.http_url("/api/orders/echo/1"), timeout=5).json()["backend"] == "reg-http"
    got = whoami(f"ws://127.0.0.1:{gw.http_port}/ws/orders?path=/o&clientId=z")
    assert got["backend"] == "reg-ws" and got["path"] == "/o?clientId=z"


@pytest.mark.parametrize("name", ["login", "logout", "stats", "connections", "history"])
def test_admin_names_are_refused_as_services(make_gateway, name):
    gw = make_gateway()
    r = requests.post(gw.http_url("/register"), json={
        "id": "x-1", "host": "127.0.0.1", "port": 1, "wsPort": 1, "service": name,
        "authKey": gw.key}, timeout=5)
    assert r.status_code == 400 and name in r.json()["error"]
    bad = make_gateway(env={"UPSTREAMS": json.dumps({name: ["http://127.0.0.1:1"]})},
                       start=False)
    with pytest.raises(RuntimeError):
        bad.start(timeout=3)
    assert "cannot be a service name" in bad.stderr()


# ---- over TLS ---------------------------------------------------------------

def test_routes_over_tls(tmp_path, make_backend, http_backend):
    from certs import CertFactory
    from tlsgw import TlsGateway
    pki = CertFactory(tmp_path / "pki")
    pair = pki.issue("server", "gw.test", dns=["localhost", "gw.test"], ips=["127.0.0.1"])
    chat, users = make_backend("echo", "chat1"), http_backend("users1")
    gw = TlsGateway(tmp_path, args=["--http-tls", "true", "--tls-cert", pair.cert,
                                    "--tls-key", pair.key],
                    env={"UPSTREAMS": upstreams(chat=[chat], users=[users])},
                    ca=pki.ca.cert, ws_tls=False, http_tls=True, name="tlsgw")
    try:
        gw.start()
        got = whoami(f"wss://127.0.0.1:{gw.http_port}/ws/chat?path=/secure&clientId=t",
                     ssl=gw.client_ssl())
        assert got["backend"] == "chat1" and got["path"] == "/secure?clientId=t"
        r = requests.post(gw.http_url("/api/users/echo"), data=b"s" * 300_000,
                          verify=str(pki.ca.cert), timeout=5)
        assert r.json()["body_len"] == 300_000
        assert header(r.json()["headers"], "X-Forwarded-Proto") == ["https"]
    finally:
        problems = gw.teardown()
    assert not problems, problems


# ---- many at once ---------------------------------------------------------

def test_mixed_traffic_at_once(api_gateway):
    """Good requests, streams, backends dying mid-body and clients leaving
    mid-request, on 12 connections at once: every good one is answered
    whole, and the gateway ends clean (teardown checks its exit)."""
    errors = []
    url = api_gateway.http_url

    def client(i):
        s = requests.Session()
        for j in range(30):
            try:
                k = (i + j) % 6
                if k == 0:
                    r = s.get(url(f"/api/billing/echo/{i}/{j}?clientId=c{i}"), timeout=5)
                    assert r.json()["path"] == f"/echo/{i}/{j}?clientId=c{i}"
                elif k == 1:
                    r = s.post(url("/api/users/echo"), data=b"x" * (j * 1000), timeout=5)
                    assert r.json()["body_len"] == j * 1000
                elif k == 2:
                    assert s.get(url("/api/users/chunked"), timeout=5).content == b"one,two,three"
                elif k == 3:
                    with pytest.raises(requests.RequestException):
                        s.get(url("/api/users/die-chunked"), timeout=5)
                    s = requests.Session()
                elif k == 4:
                    r = s.get(url("/sse/users/events?n=2&ms=10"), timeout=5)
                    assert r.content.count(b"data:") == 2
                else:
                    c = socket.create_connection(("127.0.0.1", api_gateway.http_port))
                    c.sendall(b"POST /api/users/echo HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: 100000\r\n\r\nabc")
                    c.close()
            except Exception as e:  # collected: an assert in a thread would be lost
                errors.append(f"{i}/{j}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    assert requests.get(url("/api/users/echo"), timeout=5).ok
