"""The admin API, end to end with real clients and backends: /health,
/healthz and /readyz with a gateway drain; /api/stats in seed 000's shape
with JSON types checked; /api/history samples; /api/connections paging;
POST /disconnect closing only the named connections with the code and
reason given; POST /drain and /undrain of a backend and of a group, with
the sessions really moving; a dead backend's sessions moving and the move
recorded; --admin-bind taking all of it to its own listener.

Authentication (cookies, logins, refusals) is test_dashboard_auth.py's."""

import asyncio
import json
import time

import pytest
import requests
import websockets

from fleet import FAST, Fleet
from harness import free_port, run, wait_for
from rawws import RawClient

STATUSES = {"healthy", "unhealthy", "draining", "down"}


@pytest.fixture
def seeds(tmp_path):
    """seeds(gateway, id, args...): a registered, heartbeating seed backend."""
    with Fleet(tmp_path) as fleet:
        yield fleet


def bearer(g):
    return {"Authorization": f"Bearer {g.key}"}


def api_get(g, path, base=None, **kw):
    url = (base or g.http_url("")) + path
    return requests.get(url, headers=bearer(g), timeout=3, **kw)


def api_post(g, path, body=None, base=None, data=None, headers=None):
    url = (base or g.http_url("")) + path
    h = {**bearer(g), **(headers or {})}
    if data is None:
        return requests.post(url, json=body, headers=h, timeout=3)
    return requests.post(url, data=data, headers=h, timeout=3)


def ok_json(r):
    assert r.status_code == 200, f"{r.status_code} {r.text}"
    return r.json()


def get_stats(g, base=None):
    return ok_json(api_get(g, "/api/stats", base))


def servers(g):
    return {s["id"]: s for s in get_stats(g)["servers"]}


async def connect(g, client_id, path="/"):
    return await websockets.connect(g.ws_url(f"{path}?clientId={client_id}"), ping_interval=None)


async def echo_ok(ws, text="ping"):
    await ws.send(text)
    return await asyncio.wait_for(ws.recv(), 5) == text


async def server_of(ws):
    """The registered backend behind a client (seed backends answer whoami)."""
    await ws.send("whoami")
    return json.loads(await asyncio.wait_for(ws.recv(), 5))["server"]


async def closed_with(ws, timeout=5):
    """Waits for the connection to end; returns (code, reason) the client got."""
    await asyncio.wait_for(ws.wait_closed(), timeout)
    return ws.close_code, ws.close_reason


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---- health and readiness ----------------------------------------------------


def test_health_and_a_gateway_drain(make_gateway, echo_backend):
    g = make_gateway([echo_backend])
    assert g.get("/healthz").status_code == 200

    async def body():
        ws = await connect(g, "h1")
        assert await echo_ok(ws)
        h = g.health()
        assert set(h) >= {"status", "uptime", "connections", "backends", "healthyBackends",
                          "sessions"}, h
        assert h["status"] == "ok"
        assert is_int(h["uptime"]) and h["uptime"] >= 0
        got = (h["connections"], h["backends"], h["healthyBackends"], h["sessions"])
        assert got == (1, 1, 1, 1), h
        r = g.get("/readyz")
        assert (r.status_code, r.json()) == (200, {"status": "ready"})

        # An empty body drains the whole gateway.
        r = api_post(g, "/drain", data=b"")
        assert ok_json(r)["success"] is True
        r = g.get("/readyz")
        assert (r.status_code, r.json()) == (503, {"status": "draining"})
        assert g.get("/healthz").status_code == 200
        with pytest.raises(websockets.InvalidStatusCode) as refused:
            await connect(g, "h2")
        assert refused.value.status_code == 503
        assert await echo_ok(ws, "still here")  # sessions stay

        assert ok_json(api_post(g, "/undrain", {}))["success"] is True
        r = g.get("/readyz")
        assert (r.status_code, r.json()) == (200, {"status": "ready"})
        ws2 = await connect(g, "h2")
        assert await echo_ok(ws2)
        assert g.health()["connections"] == 2
        await ws.close()
        await ws2.close()

    run(body())


def test_readyz_503_when_the_only_backend_drains(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "solo")
    assert g.get("/readyz").status_code == 200
    ok_json(api_post(g, "/drain", {"serverId": "solo"}))
    r = g.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] != "ready", r.text
    assert g.health()["healthyBackends"] == 0
    ok_json(api_post(g, "/undrain", {"serverId": "solo"}))
    assert g.get("/readyz").status_code == 200


# ---- /api/stats ----------------------------------------------------------------


SERVER_FIELDS = {
    "id": str, "host": str, "publicHost": str, "port": is_int, "wsPort": is_int,
    "activeConnections": is_int, "reportedConnections": is_int, "maxConnections": is_int,
    "lastHeartbeat": is_int, "cpuUsage": is_number, "ramUsage": is_number, "ramTotal": is_number,
    "latency": is_number, "status": str, "service": str, "group": str, "migrationsIn": is_int,
    "migrationsOut": is_int, "static": bool,
}
TOP_FIELDS = {
    "timestamp": is_int, "totalServers": is_int, "healthyServers": is_int,
    "totalActiveSessions": is_int, "stickySessions": is_int, "totalMigrations": is_int,
    "recentMigrations": list, "servers": list,
}
MIGRATION_FIELDS = {"timestamp": is_int, "fromServer": str, "toServer": str, "clientCount": is_int}


def check_types(obj, fields, what):
    missing = set(fields) - set(obj)
    assert not missing, f"{what}: missing {missing} in {obj}"
    for name, want in fields.items():
        v = obj[name]
        ok = isinstance(v, want) and not (want is not bool and isinstance(v, bool)) \
            if isinstance(want, type) else want(v)
        assert ok, f"{what}.{name} = {v!r} ({type(v).__name__})"


def test_stats_fields_types_and_values(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "alpha", "--cpu", 30, "--ram-usage", 3072, "--ram-total", 4096,
          "--max-connections", 40, "--group", "blue", "--public-host", "a.example.com")
    seeds(g, "beta", "--cpu", 92.5, "--ram-usage", 512, "--ram-total", 8192,
          "--max-connections", 50)

    async def body():
        clients = [await connect(g, f"st{i}") for i in range(5)]
        where = [await server_of(c) for c in clients]
        per = {"alpha": where.count("alpha"), "beta": where.count("beta")}
        # Heartbeats report the backend's own count: wait until both agree.
        wait_for(lambda: all(s["reportedConnections"] == per[i] for i, s in servers(g).items()),
                 5, what="heartbeats to report the sessions")
        before = int(time.time() * 1000)
        st = get_stats(g)
        after = int(time.time() * 1000)
        check_types(st, TOP_FIELDS, "stats")
        assert before - 1000 <= st["timestamp"] <= after + 1000
        assert (st["totalServers"], st["healthyServers"]) == (2, 2)
        assert st["totalActiveSessions"] == 5 and st["stickySessions"] == 5
        assert st["totalMigrations"] == 0 and st["recentMigrations"] == []
        by_id = {s["id"]: s for s in st["servers"]}
        assert set(by_id) == {"alpha", "beta"}
        for s in st["servers"]:
            check_types(s, SERVER_FIELDS, f"servers[{s['id']}]")
            assert s["status"] == "healthy"
            assert s["activeConnections"] == per[s["id"]]
            assert st["timestamp"] - 2000 <= s["lastHeartbeat"] <= st["timestamp"]
            assert s["host"] == "127.0.0.1" and not s["static"] and s["service"] == "default"
            assert s["latency"] >= 0
        a, b = by_id["alpha"], by_id["beta"]
        figures = ("cpuUsage", "ramUsage", "ramTotal", "maxConnections")
        assert tuple(a[f] for f in figures) == (30, 3072, 4096, 40), a
        assert tuple(b[f] for f in figures) == (92.5, 512, 8192, 50), b
        assert (a["group"], a["publicHost"], b["group"]) == ("blue", "a.example.com", "")
        for c in clients:
            await c.close()

    run(body())


# ---- /api/history --------------------------------------------------------------


@pytest.mark.timeout(40)
def test_history_samples_every_two_seconds(make_gateway, echo_backend):
    g = make_gateway([echo_backend])

    async def body():
        ws = await connect(g, "hist")
        stop = time.monotonic() + 7
        sent = 0
        while time.monotonic() < stop:  # 20 messages a second, each echoed
            assert await echo_ok(ws, f"m{sent}")
            sent += 1
            await asyncio.sleep(0.05)
        points = ok_json(api_get(g, "/api/history"))["points"]
        await ws.close()
        return points

    points = run(body())
    assert len(points) >= 3, points
    for p in points:
        check_types(p, {"timestamp": is_int, "connections": is_int, "backends": is_int,
                        "messagesPerSecond": is_number}, "point")
    stamps = [p["timestamp"] for p in points]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert all(1500 <= d <= 3000 for d in gaps), gaps
    assert abs(stamps[-1] - time.time() * 1000) < 3000
    assert points[-1]["connections"] == 1 and points[-1]["backends"] == 1
    # A sample wholly inside the traffic sees ~40 messages a second (20 each way).
    busy = [p["messagesPerSecond"] for p in points[1:] if p["connections"] == 1]
    assert busy and all(0 <= m < 200 for m in busy), points
    assert max(busy) >= 10, points


# ---- /api/connections ----------------------------------------------------------


def test_connections_are_paged_and_filtered(make_gateway, echo_backend):
    g = make_gateway([echo_backend], args=["--threads", "2"])

    async def body():
        ids = [f"pg{i}" for i in range(5)]
        clients = {i: await connect(g, i) for i in ids}
        for ws in clients.values():
            assert await echo_ok(ws, "0123456789")
        port_of = {i: ws.local_address[1] for i, ws in clients.items()}

        whole = ok_json(api_get(g, "/api/connections"))
        assert whole["total"] == 5 and whole["offset"] == 0 and len(whole["connections"]) == 5

        pages = []
        for offset in (0, 2, 4, 6):
            page = ok_json(api_get(g, f"/api/connections?offset={offset}&limit=2"))
            assert (page["total"], page["offset"], page["limit"]) == (5, offset, 2)
            pages.append(page["connections"])
        assert [len(p) for p in pages] == [2, 2, 1, 0]
        seen = [c for p in pages for c in p]
        assert len({c["id"] for c in seen}) == 5
        assert {c["clientId"] for c in seen} == set(ids)

        for c in seen:
            check_types(c, {"id": is_int, "clientId": str, "backend": str, "state": str,
                            "peer": str, "ageMs": is_int, "bytesIn": is_int, "bytesOut": is_int},
                        "connection")
            assert c["peer"] == f"127.0.0.1:{port_of[c['clientId']]}", c
            assert c["backend"] == echo_backend.addr and c["state"] == "open"
            assert 0 <= c["ageMs"] < 30000
            # The echoed message, at least, each way.
            assert c["bytesIn"] >= 10 + 6 and c["bytesOut"] >= 10 + 2, c

        one = ok_json(api_get(g, "/api/connections?clientId=pg3"))
        assert one["total"] == 1 and [c["clientId"] for c in one["connections"]] == ["pg3"]
        none = ok_json(api_get(g, "/api/connections?clientId=nobody"))
        assert none["total"] == 0 and none["connections"] == []

        await clients["pg0"].close()
        wait_for(lambda: ok_json(api_get(g, "/api/connections"))["total"] == 4, 5,
                 what="the closed connection to leave the list")
        for ws in clients.values():
            await ws.close()

    run(body())


# ---- POST /disconnect ------------------------------------------------------------


def test_disconnect_by_client_id_closes_only_those(make_gateway, echo_backend):
    g = make_gateway([echo_backend], args=["--threads", "2"])

    async def body():
        a = await connect(g, "alice")
        b1 = await connect(g, "bob")
        b2 = await connect(g, "bob")  # the same client twice: both go
        c = await connect(g, "carol")
        for ws in (a, b1, b2, c):
            assert await echo_ok(ws)

        r = api_post(g, "/disconnect", {"clientId": "bob", "code": 4001, "reason": "maintenance"})
        answer = ok_json(r)
        assert answer["success"] is True and answer["disconnected"] == 2, answer
        assert await closed_with(b1) == (4001, "maintenance")
        assert await closed_with(b2) == (4001, "maintenance")
        for ws in (a, c):
            assert await echo_ok(ws, "after")
        wait_for(lambda: g.connections() == 2, 5, what="two connections left")
        await a.close()
        await c.close()

    run(body())
    # The backend saw bob's two sessions end; alice's and carol's ended later.
    closes = echo_backend.wait_event("close", 4)
    assert len(closes) == 4


def test_disconnect_by_connection_id(make_gateway, echo_backend):
    g = make_gateway([echo_backend], args=["--threads", "2"])

    async def body():
        x = await connect(g, "same")
        y = await connect(g, "same")
        for ws in (x, y):
            assert await echo_ok(ws)
        listed = ok_json(api_get(g, "/api/connections?clientId=same"))["connections"]
        target = next(c["id"] for c in listed if c["peer"].endswith(f":{y.local_address[1]}"))
        answer = ok_json(api_post(g, "/disconnect", {"connectionId": target, "code": 4500,
                                                     "reason": "only you"}))
        assert answer["disconnected"] == 1, answer
        assert await closed_with(y) == (4500, "only you")
        assert await echo_ok(x, "x lives")

        # Without a code: a close frame with a valid code all the same.
        target = next(c["id"] for c in listed if c["peer"].endswith(f":{x.local_address[1]}"))
        ok_json(api_post(g, "/disconnect", {"connectionId": target}))
        code, _ = await closed_with(x)
        assert code not in (None, 1005, 1006) and (1000 <= code <= 1003 or 1007 <= code <= 4999)

        # Gone now.
        r = api_post(g, "/disconnect", {"connectionId": target})
        assert r.status_code == 404, r.text

    run(body())


def test_disconnect_errors_leave_clients_alone(make_gateway, echo_backend):
    g = make_gateway([echo_backend])

    async def body():
        ws = await connect(g, "keeper")
        assert await echo_ok(ws)
        cases = [
            ({"clientId": "nobody"}, 404),
            ({"connectionId": 999999}, 404),
            ({"clientId": "keeper", "connectionId": 1}, 400),  # one target, not two
            ({"clientId": ""}, 400),
            ({"clientId": "keeper", "code": 1004}, 400),  # reserved
            ({"clientId": "keeper", "code": 1005}, 400),  # reserved, never sent
            ({"clientId": "keeper", "code": 1006}, 400),
            ({"clientId": "keeper", "code": 1015}, 400),
            ({"clientId": "keeper", "code": 999}, 400),
            ({"clientId": "keeper", "code": 2999}, 400),
            ({"clientId": "keeper", "code": 5000}, 400),
            ({"clientId": "keeper", "code": "4001"}, 400),
            ({"clientId": "keeper", "reason": "r" * 124}, 400),  # over 123 bytes
            ({}, 400),
        ]
        for body_, status in cases:
            r = api_post(g, "/disconnect", body_)
            assert r.status_code == status, (body_, r.status_code, r.text)
            assert isinstance(r.json().get("error"), str), r.text
        r = api_post(g, "/disconnect", data=b"not json",
                     headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert await echo_ok(ws, "untouched")
        assert g.connections() == 1
        await ws.close()

    run(body())


def test_disconnect_during_the_upgrade_answers_in_http(make_gateway, make_backend):
    """A client whose upgrade is still under way (its backend has not
    answered yet) has not switched protocols: a disconnect must answer it
    in HTTP, never with WebSocket frames it cannot read."""
    silent = make_backend("silent")  # takes the TCP connection, never answers
    g = make_gateway([silent], args=["--upstream-timeout", "10s"])
    c = RawClient(g.ws_port)
    try:
        c.send(b"GET /?clientId=pending HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
        listed = wait_for(lambda: ok_json(api_get(g, "/api/connections?clientId=pending"))
                          ["connections"], 5, what="the pending connection to be listed")
        assert listed[0]["state"] != "open", listed
        r = api_post(g, "/disconnect", {"clientId": "pending", "code": 4001, "reason": "go"})
        assert r.status_code in (200, 404), r.text
        first = c.read_until_eof(timeout=12)
        assert first.startswith(b"HTTP/1.1 "), f"the client read {first[:60]!r}, not an HTTP answer"
        status = int(first.split(b" ", 2)[1])
        assert 400 <= status < 600, first[:200]
    finally:
        c.close()


# ---- POST /drain and /undrain of backends ----------------------------------------


@pytest.mark.timeout(60)
def test_drain_and_undrain_a_backend_end_to_end(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "alpha")
    seeds(g, "beta")

    async def body():
        clients = [await connect(g, f"dr{i}") for i in range(4)]
        where = [await server_of(c) for c in clients]
        assert sorted(set(where)) == ["alpha", "beta"], where

        answer = ok_json(api_post(g, "/drain", {"serverId": "beta"}))
        assert answer["success"] is True
        assert servers(g)["beta"]["status"] == "draining"
        # The same client connections are now served by alpha.
        for c in clients:
            await wait_for_server(c, "alpha")
        assert all(not c.closed for c in clients)
        st = servers(g)
        assert st["beta"]["activeConnections"] == 0 and st["alpha"]["activeConnections"] == 4
        assert st["beta"]["migrationsOut"] == where.count("beta")
        # New sessions avoid it.
        fresh = [await connect(g, f"new{i}") for i in range(3)]
        assert [await server_of(c) for c in fresh] == ["alpha"] * 3

        ok_json(api_post(g, "/undrain", {"serverId": "beta"}))
        assert servers(g)["beta"]["status"] == "healthy"
        later = [await connect(g, f"later{i}") for i in range(4)]
        assert "beta" in [await server_of(c) for c in later]

        r = api_post(g, "/drain", {"serverId": "nobody"})
        assert r.status_code == 404, r.text
        for c in clients + fresh + later:
            await c.close()

    run(body(), 45)


async def wait_for_server(ws, want, timeout=8.0):
    """Asks whoami until the answer comes from `want` (a move happens between
    two messages, so the first answers may still come from the old one)."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = await server_of(ws)
        if got == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"still served by {got}, want {want}")


@pytest.mark.timeout(60)
def test_drain_a_group(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "blue1", "--group", "blue")
    seeds(g, "blue2", "--group", "blue")
    seeds(g, "green1", "--group", "green")

    async def body():
        clients = [await connect(g, f"gr{i}") for i in range(6)]
        where = [await server_of(c) for c in clients]
        assert set(where) == {"blue1", "blue2", "green1"}, where

        answer = ok_json(api_post(g, "/drain", {"group": "blue"}))
        assert answer["success"] is True
        st = servers(g)
        assert (st["blue1"]["status"], st["blue2"]["status"], st["green1"]["status"]) == (
            "draining", "draining", "healthy")
        for c in clients:
            await wait_for_server(c, "green1")
        assert servers(g)["green1"]["activeConnections"] == 6

        ok_json(api_post(g, "/undrain", {"group": "blue"}))
        assert {s["status"] for s in servers(g).values()} == {"healthy"}
        r = api_post(g, "/drain", {"group": "purple"})
        assert r.status_code == 404, r.text
        for c in clients:
            await c.close()

    run(body(), 45)


# ---- a dead backend --------------------------------------------------------------


@pytest.mark.timeout(60)
def test_dead_backend_sessions_move_and_the_move_is_recorded(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "alpha")
    beta = seeds(g, "beta")

    async def body():
        clients = [await connect(g, f"dd{i}") for i in range(4)]
        where = [await server_of(c) for c in clients]
        on_beta = where.count("beta")
        assert 0 < on_beta < 4, where

        killed_ms = int(time.time() * 1000)
        beta.kill()
        for c in clients:
            await wait_for_server(c, "alpha")
        assert all(not c.closed for c in clients)

        # Gone from the list after --server-timeout (1 s here).
        wait_for(lambda: "beta" not in servers(g), 5, what="beta to leave /api/stats")
        st = get_stats(g)
        moves = [m for m in st["recentMigrations"] if m["fromServer"] == "beta"]
        assert moves, st["recentMigrations"]
        for m in st["recentMigrations"]:
            check_types(m, MIGRATION_FIELDS, "recentMigrations[]")
        for m in moves:
            assert killed_ms - 1000 <= m["timestamp"] <= st["timestamp"], (killed_ms, m)
            assert "alpha" in m["toServer"], m
        assert sum(m["clientCount"] for m in moves) == on_beta, moves
        assert st["totalMigrations"] >= len(moves)
        assert (st["totalServers"], st["healthyServers"], st["totalActiveSessions"]) == (1, 1, 4)
        alpha = st["servers"][0]
        assert alpha["migrationsIn"] == on_beta and alpha["activeConnections"] == 4
        for c in clients:
            await c.close()

    run(body(), 45)


# ---- ADMIN_BIND --------------------------------------------------------------------


def test_admin_bind_takes_the_admin_api_to_its_own_listener(make_gateway, seeds):
    admin_port = free_port()
    g = make_gateway(args=["--admin-bind", f"127.0.0.1:{admin_port}", *FAST])
    admin = f"http://127.0.0.1:{admin_port}"
    seeds(g, "alpha")  # registers on WEBSRV_PORT: registration stays there

    async def body():
        ws = await connect(g, "ab")
        assert await server_of(ws) == "alpha"

        assert [s["id"] for s in get_stats(g, base=admin)["servers"]] == ["alpha"]
        assert ok_json(api_get(g, "/api/connections", base=admin))["total"] == 1
        assert "points" in ok_json(api_get(g, "/api/history", base=admin))
        assert requests.get(admin + "/", timeout=3).status_code == 200
        assert requests.get(admin + "/metrics", timeout=3).status_code == 200
        r = requests.post(admin + "/api/login", json={"authKey": g.key}, timeout=3)
        assert r.status_code == 200 and "dashboard_session" in r.cookies

        # Gone from WEBSRV_PORT, whatever the credentials.
        for path in ("/", "/dashboard.js", "/dashboard.css", "/metrics", "/api/stats",
                     "/api/history", "/api/connections"):
            r = api_get(g, path)
            assert r.status_code == 404, (path, r.status_code)
        for path, body_ in (("/api/login", {"authKey": g.key}), ("/api/logout", {}),
                            ("/drain", {"serverId": "alpha"}), ("/undrain", {}),
                            ("/disconnect", {"clientId": "ab"})):
            r = api_post(g, path, body_)
            assert r.status_code == 404, (path, r.status_code)
        assert servers_via(g, admin)["alpha"]["status"] == "healthy"
        assert await echo_ok(ws, "not disconnected")
        # Health stays on both.
        for base in (g.http_url(""), admin):
            for path in ("/healthz", "/readyz", "/health"):
                assert requests.get(base + path, timeout=3).status_code == 200, (base, path)

        ok_json(api_post(g, "/disconnect", {"clientId": "ab", "code": 4000}, base=admin))
        assert (await closed_with(ws))[0] == 4000

    run(body())


def servers_via(g, base):
    return {s["id"]: s for s in get_stats(g, base=base)["servers"]}
