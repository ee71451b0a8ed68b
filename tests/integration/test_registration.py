"""The registration API of seed 000 on WEBSRV_PORT: POST /register,
/heartbeat and /unregister with the shared key (authKey or a bearer token),
validation that names the field, GET /api/stats in the seed's shape, and
backends that fall silent leaving the registry after SERVER_TIMEOUT."""

import asyncio
import json
import socket
import time

import pytest
import requests
import websockets

from fleet import FAST, Fleet, bearer, post, registration, servers, stats, whoami
from harness import run, wait_for


@pytest.fixture
def seeds(tmp_path):
    """seeds(gateway, id, args...): a registered seed_backend.py."""
    with Fleet(tmp_path) as fleet:
        yield fleet


INVALID_KEY = "Invalid authentication key"


def test_register_heartbeat_unregister(make_gateway):
    # No heartbeats from a real backend here: a long SERVER_TIMEOUT.
    g = make_gateway(args=["--heartbeat-interval", "200", "--server-timeout", "30s"])

    r = post(g, "/register", registration(g, "b1"))
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "message": "Server registered successfully",
                        "serverId": "b1"}
    assert "b1" in servers(g)

    # Both names of the id are read, as seed backends send either.
    for name in ("serverId", "id"):
        r = post(g, "/heartbeat", {name: "b1", "activeConnections": 3, "authKey": g.key})
        assert r.status_code == 200, r.text
        assert r.json()["success"] is True

    # Numbers as strings, as JavaScript backends send them.
    r = post(g, "/heartbeat", {"serverId": "b1", "activeConnections": "7", "cpuUsage": "55.5",
                               "ramUsage": "100", "ramTotal": "200", "authKey": g.key})
    assert r.status_code == 200, r.text
    s = servers(g)["b1"]
    got = (s["reportedConnections"], s["cpuUsage"], s["ramUsage"], s["ramTotal"])
    assert got == (7, 55.5, 100, 200), s

    r = post(g, "/heartbeat", {"serverId": "nobody", "activeConnections": 0, "authKey": g.key})
    assert r.status_code == 404, r.text
    assert isinstance(r.json()["error"], str)

    r = post(g, "/unregister", {"id": "b1", "authKey": g.key})
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True
    assert "b1" not in servers(g)

    # Gone: its heartbeats and a second unregister are 404.
    r = post(g, "/heartbeat", {"serverId": "b1", "activeConnections": 0, "authKey": g.key})
    assert r.status_code == 404, r.text
    r = post(g, "/unregister", {"serverId": "b1", "authKey": g.key})
    assert r.status_code == 404, r.text

    post(g, "/register", registration(g, "b2"))
    r = post(g, "/unregister", {"serverId": "b2", "authKey": g.key})
    assert r.status_code == 200, r.text
    assert servers(g) == {}


@pytest.mark.parametrize("key", ["wrong-key-wrong-key", None, ""],
                         ids=["wrong", "missing", "empty"])
def test_bad_key_is_401_before_validation(make_gateway, key):
    g = make_gateway(args=FAST)
    assert post(g, "/register", registration(g, "b1")).status_code == 200

    def with_key(body):
        body = dict(body)
        body.pop("authKey", None)
        if key is not None:
            body["authKey"] = key
        return body

    requests_ = [
        ("/register", registration(g, "b2")),
        # Invalid fields too: the key is checked first.
        ("/register", {"id": 7, "port": 0, "wsPort": "x"}),
        ("/heartbeat", {"serverId": "b1", "activeConnections": 1}),
        ("/heartbeat", {"activeConnections": "lots"}),
        ("/unregister", {"serverId": "b1"}),
        ("/unregister", {}),
    ]
    for path, body in requests_:
        r = post(g, path, with_key(body))
        assert r.status_code == 401, (path, body, r.status_code, r.text)
        assert r.json()["error"] == INVALID_KEY, r.text
    # A wrong bearer token does not help.
    r = post(g, "/register", with_key(registration(g, "b3")),
             headers={"Authorization": "Bearer nope-nope-nope"})
    assert r.status_code == 401, r.text
    # Nothing changed.
    assert set(servers(g)) == {"b1"}


def test_bearer_token_authenticates(make_gateway):
    g = make_gateway(args=FAST)
    body = registration(g, "b1")
    del body["authKey"]
    r = post(g, "/register", body, headers=bearer(g))
    assert r.status_code == 200, r.text
    r = post(g, "/heartbeat", {"serverId": "b1", "activeConnections": 0}, headers=bearer(g))
    assert r.status_code == 200, r.text
    r = post(g, "/unregister", {"serverId": "b1"}, headers=bearer(g))
    assert r.status_code == 200, r.text


def _malformed(g):
    """(path, body or raw bytes, status, what the error must start with)."""
    reg = registration(g, "bad")
    key = g.key

    def without(field):
        b = dict(reg)
        del b[field]
        return b

    def with_(**fields):
        return {**reg, **fields}

    def beat(**fields):
        return {"serverId": "b1", "activeConnections": 1, "authKey": key, **fields}

    # A valid registration up to an open "pad" string, for chunked bodies.
    opening = json.dumps(with_(pad=""))[:-2].encode()

    return [
        ("/register", without("id"), 400, "id"),
        ("/register", without("host"), 400, "host"),
        ("/register", without("port"), 400, "port"),
        ("/register", without("wsPort"), 400, "wsPort"),
        ("/register", with_(port=0), 400, "port"),
        ("/register", with_(port=65536), 400, "port"),
        ("/register", with_(port=-1), 400, "port"),
        ("/register", with_(port=80.5), 400, "port"),
        ("/register", with_(port="eighty"), 400, "port"),
        ("/register", with_(port=""), 400, "port"),
        ("/register", with_(port=True), 400, "port"),
        ("/register", with_(port=[80]), 400, "port"),
        ("/register", with_(wsPort=0), 400, "wsPort"),
        ("/register", with_(wsPort=65536), 400, "wsPort"),
        ("/register", with_(wsPort="3001x"), 400, "wsPort"),
        ("/register", with_(id=12), 400, "id"),
        ("/register", with_(id=""), 400, "id"),
        ("/register", with_(id="x" * 300), 400, "id"),
        ("/register", with_(host=5), 400, "host"),
        ("/register", with_(host=""), 400, "host"),
        ("/register", with_(host="bad host/name"), 400, "host"),
        ("/register", with_(host="no-such-host.invalid"), 400, "host"),
        ("/register", with_(publicHost=5), 400, "publicHost"),
        ("/register", with_(maxConnections=-1), 400, "maxConnections"),
        ("/register", with_(maxConnections="many"), 400, "maxConnections"),
        ("/register", with_(maxConnections=1.5), 400, "maxConnections"),
        ("/register", b'{"id": "bad", "host": ', 400, ""),
        ("/register", b"[1, 2, 3]", 400, ""),
        ("/register", b"", 400, ""),
        ("/register", b"\xff\xfe{}", 400, ""),
        ("/register", json.dumps(with_(pad="x" * 70000)).encode(), 413, ""),
        # The same without Content-Length (chunked): one 70 KB chunk, then
        # many 1 KiB ones.
        ("/register", [opening, b"z" * 70000, b'"}'], 413, ""),
        ("/register", [opening] + [b"z" * 1024] * 70 + [b'"}'], 413, ""),
        ("/heartbeat", {"activeConnections": 1, "authKey": key}, 400, "serverId"),
        ("/heartbeat", {"serverId": 5, "activeConnections": 1, "authKey": key}, 400, "serverId"),
        ("/heartbeat", beat(activeConnections=-1), 400, "activeConnections"),
        ("/heartbeat", beat(activeConnections="some"), 400, "activeConnections"),
        ("/heartbeat", beat(cpuUsage="hot"), 400, "cpuUsage"),
        ("/heartbeat", beat(ramUsage=[]), 400, "ramUsage"),
        ("/heartbeat", beat(ramTotal={}), 400, "ramTotal"),
        ("/heartbeat", b"not json", 400, ""),
        ("/heartbeat", json.dumps(beat(pad="y" * 70000)).encode(), 413, ""),
        ("/unregister", {"authKey": key}, 400, "serverId"),
        ("/unregister", {"serverId": ["b1"], "authKey": key}, 400, "serverId"),
        ("/unregister", b"{", 400, ""),
    ]


def _show(payload):
    """A short description of a request body for a failure message."""
    if isinstance(payload, bytes):
        return repr(payload[:80])
    if isinstance(payload, list):
        return f"chunked: {len(payload)} chunks, {sum(map(len, payload))} bytes"
    return {k: (v[:20] + "..." if isinstance(v, str) and len(v) > 40 else v)
            for k, v in payload.items()}


@pytest.mark.timeout(60)
def test_malformed_requests_get_their_status_and_the_gateway_keeps_serving(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "b1")
    cases = _malformed(g)

    async def body():
        wrong = []
        async with websockets.connect(g.ws_url("/live?mode=seq")) as ws:
            for i, (path, payload, status, field) in enumerate(cases):
                loop = asyncio.get_running_loop()
                if isinstance(payload, list):  # chunks: Transfer-Encoding: chunked
                    r = await loop.run_in_executor(None, lambda: post(g, path, data=iter(payload)))
                elif isinstance(payload, bytes):
                    r = await loop.run_in_executor(None, lambda: post(g, path, data=payload))
                else:
                    r = await loop.run_in_executor(None, lambda: post(g, path, payload))
                try:
                    answer = r.json()
                except ValueError:
                    answer = None
                error = answer.get("error") if isinstance(answer, dict) else None
                ok = r.status_code == status and isinstance(error, str) and error.startswith(field)
                if not ok:
                    wrong.append(f"{path} {_show(payload)}: want {status} '{field}...', "
                                 f"got {r.status_code} {r.text[:200]}")
                # The client keeps echoing throughout.
                await ws.send(str(i))
                assert await asyncio.wait_for(ws.recv(), 5) == f"b1:{i}"
        return wrong

    wrong = run(body(), timeout=50)
    assert not wrong, "\n".join(wrong)
    # Nothing malformed was registered; the real backend is still there.
    assert set(servers(g)) == {"b1"}
    assert g.get("/healthz").status_code == 200


def _localhost_is_ipv4():
    try:
        return socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)[0][4][0] == "127.0.0.1"
    except OSError:
        return False


def test_numeric_strings_host_names_and_updates(make_gateway, seeds):
    """JavaScript backends send numbers as strings; host names are resolved;
    registering an id again updates it in place."""
    if not _localhost_is_ipv4():
        pytest.skip("localhost does not resolve to 127.0.0.1 first here")
    g = make_gateway(args=FAST)
    b = seeds(g, "b1", "--max-connections", 5, "--public-host", "old.example.com")
    assert servers(g)["b1"]["maxConnections"] == 5

    r = post(g, "/register", {"id": "b1", "host": "localhost", "publicHost": "new.example.com",
                              "port": str(b.http_port), "wsPort": str(b.ws_port),
                              "maxConnections": "40", "authKey": g.key})
    assert r.status_code == 200, r.text
    assert r.json()["serverId"] == "b1"
    st = stats(g)
    assert st["totalServers"] == 1, st
    s = st["servers"][0]
    assert (s["id"], s["publicHost"], s["maxConnections"]) == ("b1", "new.example.com", 40), s
    assert (s["port"], s["wsPort"]) == (b.http_port, b.ws_port), s
    assert isinstance(s["port"], int) and isinstance(s["wsPort"], int)
    # Sessions reach it through the resolved name.
    info = run(whoami(g.ws_url("/by-name")))
    assert info["server"] == "b1"


def test_stats_shape_and_values(make_gateway, seeds):
    g = make_gateway(args=FAST)
    b1 = seeds(g, "b1", "--cpu", 42.5, "--ram-usage", 1024, "--ram-total", 8192,
               "--max-connections", 50, "--public-host", "eu.example.com")
    b2 = seeds(g, "b2", "--cpu", 7, "--ram-usage", 100.5, "--ram-total", 2048,
               "--max-connections", 60)

    assert requests.get(g.http_url("/api/stats"), timeout=3).status_code == 401
    r = requests.get(g.http_url("/api/stats"),
                     headers={"Authorization": "Bearer wrong-key-for-stats"}, timeout=3)
    assert r.status_code == 401
    assert r.json()["error"] == INVALID_KEY

    async def body():
        async with websockets.connect(g.ws_url("/s?mode=seq")) as ws:
            await ws.send("1")
            serving = (await ws.recv()).split(":")[0]
            # Both have heartbeated since, and the heartbeat reports the session.
            def settled():
                st = stats(g)
                by_id = {x["id"]: x for x in st["servers"]}
                done = by_id[serving]["reportedConnections"] == 1 and all(
                    x["cpuUsage"] is not None for x in st["servers"])
                return st if done else None

            return serving, wait_for(settled, 3, what="heartbeats that report the session")

    serving, st = run(body())
    now_ms = time.time() * 1000
    for field in ("timestamp", "totalServers", "healthyServers", "totalActiveSessions",
                  "totalMigrations"):
        assert type(st[field]) is int, (field, st[field])
    assert abs(st["timestamp"] - now_ms) < 5000
    assert (st["totalServers"], st["healthyServers"], st["totalActiveSessions"]) == (2, 2, 1), st
    assert st["totalMigrations"] == 0 and st["recentMigrations"] == []
    by_id = {s["id"]: s for s in st["servers"]}
    assert set(by_id) == {"b1", "b2"}
    expect = {
        "b1": dict(publicHost="eu.example.com", port=b1.http_port, wsPort=b1.ws_port,
                   maxConnections=50, cpuUsage=42.5, ramUsage=1024, ramTotal=8192),
        "b2": dict(publicHost="127.0.0.1", port=b2.http_port, wsPort=b2.ws_port,
                   maxConnections=60, cpuUsage=7, ramUsage=100.5, ramTotal=2048),
    }
    types = {"id": str, "host": str, "publicHost": str, "port": int, "wsPort": int,
             "activeConnections": int, "reportedConnections": int, "maxConnections": int,
             "lastHeartbeat": int, "cpuUsage": (int, float), "ramUsage": (int, float),
             "ramTotal": (int, float), "latency": (int, float), "status": str}
    for sid, s in by_id.items():
        for field, t in types.items():
            value = s[field]
            assert isinstance(value, t) and not isinstance(value, bool), (sid, field, value)
        assert s["host"] == "127.0.0.1"
        for field, value in expect[sid].items():
            assert s[field] == value, (sid, field, s[field], value)
        assert s["status"] == "healthy"
        assert s["latency"] >= 0
        # Heartbeats every 200 ms.
        age = st["timestamp"] - s["lastHeartbeat"]
        assert 0 <= age < 1000, (st["timestamp"], s["lastHeartbeat"])
        live = 1 if sid == serving else 0
        assert s["activeConnections"] == live, s
        assert s["reportedConnections"] == live, s


SERVER_TIMEOUT, HEARTBEAT_INTERVAL, SLACK = 1.0, 0.2, 0.3


def _gone_at(g, backend_id, timeout, statuses=None):
    """Polls /api/stats until the backend is no longer listed; returns the
    wall time it was first seen missing. Appends the backend's status and
    the healthyServers count of each poll to `statuses`."""
    def gone():
        st = stats(g)
        mine = [s for s in st["servers"] if s["id"] == backend_id]
        if mine and statuses is not None:
            statuses.append((mine[0]["status"], st["healthyServers"]))
        return not mine

    wait_for(gone, timeout, interval=0.01, what=f"{backend_id} to leave /api/stats")
    return time.time()


def test_silent_backend_leaves_stats_after_server_timeout(make_gateway, seeds):
    g = make_gateway(args=FAST)
    live = seeds(g, "alive")
    mute = seeds(g, "mute", "--no-heartbeat")
    registered = [e["t"] for e in mute.events("register") if e["status"] == 200][0]
    assert "mute" in servers(g)

    gone = _gone_at(g, "mute", 5)
    silent = gone - registered
    assert SERVER_TIMEOUT - 0.05 <= silent <= SERVER_TIMEOUT + HEARTBEAT_INTERVAL + SLACK, silent
    assert g.wait_log(r"backend dead: no heartbeat.*backend=mute\b")
    # The one that heartbeats stays, healthy.
    time.sleep(0.5)
    assert servers(g)["alive"]["status"] == "healthy"
    assert live.events("heartbeat") and all(e["status"] == 200 for e in live.events("heartbeat"))


def test_hung_backend_leaves_and_registers_again_when_it_wakes(make_gateway, seeds):
    g = make_gateway(args=FAST)
    b = seeds(g, "sleepy")
    last_beat = [e["t"] for e in b.events("heartbeat")] or [e["t"] for e in b.events("register")]
    b.sigstop()
    stopped = time.time()

    statuses = []
    gone = _gone_at(g, "sleepy", 5, statuses)
    beats = [e["t"] for e in b.events("heartbeat")] + last_beat
    silent = gone - max(beats)
    assert silent <= SERVER_TIMEOUT + HEARTBEAT_INTERVAL + SLACK, silent
    assert gone - stopped >= SERVER_TIMEOUT - HEARTBEAT_INTERVAL - 0.05, gone - stopped
    # Late heartbeats show before the end: healthy, then unhealthy (and no
    # longer counted healthy), then gone.
    assert statuses and statuses[0] == ("healthy", 1), statuses
    assert ("unhealthy", 0) in statuses, statuses
    assert {st for st, _ in statuses} <= {"healthy", "unhealthy"}, statuses
    seen = [st for st, _ in statuses]
    assert seen == sorted(seen, key=lambda st: st == "unhealthy"), "healthy again after unhealthy"

    # Awake again: its next heartbeat gets 404, so it registers again.
    b.sigcont()
    wait_for(lambda: len([e for e in b.events("register") if e["status"] == 200]) == 2, 3,
             what="the backend to register again")
    assert any(e["status"] == 404 for e in b.events("heartbeat"))
    assert "sleepy" in servers(g)
    assert run(whoami(g.ws_url("/back")))["server"] == "sleepy"


def test_unregister_on_exit_leaves_at_once(make_gateway, seeds):
    g = make_gateway(args=["--heartbeat-interval", "200", "--server-timeout", "30s"])
    b = seeds(g, "polite", "--unregister-on-exit")
    seeds(g, "other")
    b.proc.terminate()
    assert b.proc.wait(5) == 0
    assert [e["status"] for e in b.events("unregister")] == [200]
    assert set(servers(g)) == {"other"}
    for _ in range(4):
        assert run(whoami(g.ws_url("/after")))["server"] == "other"


def test_a_configured_backend_id_cannot_be_taken(make_gateway, echo_backend):
    """A registration never replaces a backend from --backend: its id (the
    HOST:PORT given) answers 409 and the configured backend stays."""
    static_id = f"127.0.0.1:{echo_backend.port}"
    g = make_gateway([echo_backend], args=["--server-timeout", "30s"])
    assert static_id in servers(g)
    body = registration(g, static_id)
    r = post(g, "/register", body)
    assert r.status_code == 409, r.text
    assert "configured backend" in r.json()["error"]
    assert servers(g)[static_id]["static"] is True
