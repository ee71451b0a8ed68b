"""Health endpoints on WEBSRV_PORT: /healthz, /readyz, /health."""

import websockets

from harness import run


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
        from harness import wait_for
        wait_for(lambda: gateway.connections() == 0, 5, what="connections to return to 0")

    run(body())
