"""Health endpoints on WEBSRV_PORT: /healthz, /readyz, /health, /_pressure."""

import os
import signal
import time

import websockets

from harness import run, wait_for


def test_healthz_is_ok(gateway):
    r = gateway.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz_ready_with_a_backend(gateway):
    r = gateway.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


def test_readyz_not_ready_without_backend(make_gateway):
    g = make_gateway([])
    r = g.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] != "ready"
    # Alive all the same.
    assert g.get("/healthz").status_code == 200


def test_health_summary(make_gateway, make_backend):
    b1, b2 = make_backend("echo"), make_backend("echo")
    g = make_gateway([b1, b2])
    h = g.health()
    assert h["status"] == "ok"
    assert isinstance(h["uptime"], int) and h["uptime"] >= 0
    assert h["connections"] == 0
    assert h["backends"] == 2


def test_health_counts_live_connections(gateway):
    async def body():
        async with websockets.connect(gateway.ws_url()) as a, websockets.connect(gateway.ws_url()) as b:
            await a.send("x")
            await b.send("y")
            assert await a.recv() == "x" and await b.recv() == "y"
            assert gateway.connections() == 2
        # Both closed: the count returns to zero.
        wait_for(lambda: gateway.connections() == 0, 5, what="connections to return to 0")

    run(body())


# ---- /_pressure -------------------------------------------------------------

def test_pressure_is_ok_when_idle(make_gateway, echo_backend):
    g = make_gateway([echo_backend], args=["--threads", "2"])
    r = g.get("/_pressure")
    assert r.status_code == 200
    p = r.json()
    assert p["status"] == "ok" and p["reasons"] == []
    assert len(p["eventLoopDelayMs"]) == 2
    assert all(isinstance(d, int) and 0 <= d < 1000 for d in p["eventLoopDelayMs"])
    assert p["rssBytes"] > 1 << 20
    assert p["connections"] == 0 and p["maxConnections"] > 0
    assert p["pendingHandshakes"] == 0 and p["maxPendingHandshakes"] == 10000
    assert p["limits"] == {"eventLoopDelayMs": 1000, "rssBytes": 0, "connectionsPercent": 95}


def test_pressure_past_memory_limit(make_gateway, echo_backend):
    g = make_gateway([echo_backend], args=["--pressure-max-rss", "1MiB"])
    r = g.get("/_pressure")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "10"
    reasons = r.json()["reasons"]
    assert len(reasons) == 1 and reasons[0].startswith("resident memory"), reasons


def test_pressure_past_connection_share(make_gateway, echo_backend):
    g = make_gateway([echo_backend],
                     args=["--max-connections", "2", "--pressure-max-connections", "50"])

    async def body():
        async with websockets.connect(g.ws_url()):
            assert g.get("/_pressure").status_code == 200  # 1 of 2 is not past 50 %
            async with websockets.connect(g.ws_url()):
                r = g.get("/_pressure")
                assert r.status_code == 503
                assert r.json()["reasons"] == ["2 connections of 2 (limit 50 %)"]
                assert r.json()["connections"] == 2

    run(body())


def test_pressure_sees_a_stalled_event_loop(make_gateway, echo_backend):
    """The whole process is stopped for 1.5 s: every worker's loop runs that
    late, past the default 1 s limit, and /_pressure says so afterwards."""
    g = make_gateway([echo_backend])
    os.kill(g.proc.pid, signal.SIGSTOP)
    time.sleep(1.5)
    os.kill(g.proc.pid, signal.SIGCONT)
    r = g.get("/_pressure")
    assert r.status_code == 503
    p = r.json()
    assert max(p["eventLoopDelayMs"]) >= 1400, p
    assert any("event loop" in reason for reason in p["reasons"]), p
    # It passes: a calm second later the delay is back to normal.
    wait_for(lambda: g.get("/_pressure").status_code == 200, 5, what="pressure to clear")
