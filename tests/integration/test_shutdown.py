"""Graceful shutdown: SIGTERM stops new sessions and readiness, live
clients keep working for --shutdown-timeout, then get 1001 and the process
exits 0. A second SIGTERM ends the drain at once."""

import asyncio
import signal
import time

import pytest
import requests
import websockets

from harness import wait_for
from rawws import RawClient

CLIENTS = 3


async def echo_ok(ws, tag):
    await ws.send(tag)
    return await asyncio.wait_for(ws.recv(), 5) == tag


async def new_session_refused(g):
    """True when a new WebSocket session cannot be opened."""
    try:
        async with websockets.connect(g.ws_url("/late"), open_timeout=3):
            return False
    except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError):
        return True


async def wait_closed(ws, timeout):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed:
        return ws.close_code, ws.close_reason


def readyz(g):
    try:
        return g.get("/readyz", timeout=1).status_code
    except requests.RequestException:
        return None


@pytest.mark.timeout(30)
def test_sigterm_drains_then_closes_with_1001_and_exits_0(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--shutdown-timeout", "2s"])

    async def body():
        conns = [await websockets.connect(g.ws_url(f"/c{i}"), ping_interval=None) for i in range(CLIENTS)]
        for i, ws in enumerate(conns):
            assert await echo_ok(ws, f"before-{i}")
        assert readyz(g) == 200

        t0 = time.monotonic()
        g.signal(signal.SIGTERM)
        await asyncio.to_thread(wait_for, lambda: readyz(g) == 503, 2, what="readyz to say 503")
        assert g.get("/readyz").json()["status"] != "ready"
        assert g.get("/healthz").status_code == 200  # still alive while draining

        # During the drain: existing sessions keep echoing, new ones are refused.
        assert await new_session_refused(g)
        rounds = 0
        while time.monotonic() - t0 < 1.2:
            for i, ws in enumerate(conns):
                assert await echo_ok(ws, f"during-{i}-{rounds}")
            rounds += 1
            await asyncio.sleep(0.05)
        assert rounds >= 5

        # After --shutdown-timeout every client gets 1001.
        results = await asyncio.gather(*(wait_closed(ws, 6) for ws in conns))
        elapsed = time.monotonic() - t0
        for code, reason in results:
            assert code == 1001, (code, reason)
        assert 1.8 <= elapsed <= 4.5, elapsed

    asyncio.run(asyncio.wait_for(body(), 20))
    assert g.wait_exit(5) == 0
    assert g.proc.returncode == 0
    # The backend sessions were closed too.
    echo_backend.wait_event("close", count=CLIENTS)


@pytest.mark.timeout(30)
def test_sigterm_without_clients_exits_at_once(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--shutdown-timeout", "20s"])
    t0 = time.monotonic()
    g.signal(signal.SIGTERM)
    assert g.wait_exit(5) == 0
    assert time.monotonic() - t0 < 3


@pytest.mark.timeout(30)
def test_second_sigterm_ends_the_drain_at_once(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--shutdown-timeout", "30s"])

    async def body():
        conns = [await websockets.connect(g.ws_url(), ping_interval=None) for _ in range(CLIENTS)]
        for i, ws in enumerate(conns):
            assert await echo_ok(ws, f"x{i}")
        g.signal(signal.SIGTERM)
        await asyncio.to_thread(g.wait_log, "shutdown requested", 1, 5)
        assert await echo_ok(conns[0], "still draining")
        t0 = time.monotonic()
        g.signal(signal.SIGTERM)
        results = await asyncio.gather(*(wait_closed(ws, 5) for ws in conns))
        return time.monotonic() - t0, results

    elapsed, results = asyncio.run(asyncio.wait_for(body(), 20))
    t0 = time.monotonic()
    assert g.wait_exit(5) == 0
    assert elapsed + (time.monotonic() - t0) < 3, elapsed
    for code, _ in results:
        assert code is not None


@pytest.mark.timeout(30)
def test_sigint_drains_like_sigterm(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--shutdown-timeout", "1s"])

    async def body():
        ws = await websockets.connect(g.ws_url(), ping_interval=None)
        assert await echo_ok(ws, "a")
        g.signal(signal.SIGINT)
        await asyncio.to_thread(wait_for, lambda: readyz(g) == 503, 2, what="readyz 503")
        assert await echo_ok(ws, "b")
        return await wait_closed(ws, 5)

    code, _ = asyncio.run(asyncio.wait_for(body(), 15))
    assert code == 1001
    assert g.wait_exit(5) == 0


@pytest.mark.timeout(30)
def test_raw_client_sees_1001_close_frame(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--shutdown-timeout", "500ms", "--close-timeout", "1s"])
    c = RawClient(g.ws_port, timeout=10)
    try:
        c.handshake()
        g.signal(signal.SIGTERM)
        f = c.expect_close(timeout=5)
        assert f is not None and f.close_code == 1001, f
        c.send_close(1001)
        assert c.wait_eof(timeout=3)
    finally:
        c.close()
    assert g.wait_exit(5) == 0


@pytest.mark.timeout(30)
def test_an_undrain_cannot_undo_a_shutdown(make_gateway, echo_backend):
    """An operator's POST /undrain {} takes back an operator's drain, never
    a SIGTERM: the process keeps shutting down and stays not ready."""
    g = make_gateway([echo_backend], ["--shutdown-timeout", "5s"])
    auth = {"Authorization": f"Bearer {g.key}"}

    async def body():
        async with websockets.connect(g.ws_url("/stay"), ping_interval=None) as ws:
            assert await echo_ok(ws, "before")
            g.signal(signal.SIGTERM)
            await asyncio.to_thread(wait_for, lambda: readyz(g) == 503, 2, what="readyz 503")
            r = requests.post(g.http_url("/undrain"), json={}, headers=auth, timeout=3)
            assert r.status_code == 409, r.text
            assert "shutting down" in r.json()["error"]
            assert readyz(g) == 503
            assert await new_session_refused(g)
            assert await echo_ok(ws, "during")  # the drain itself goes on as before

    asyncio.run(body())


def test_an_operator_drain_of_the_gateway_is_undone_by_undrain(make_gateway, echo_backend):
    g = make_gateway([echo_backend])
    auth = {"Authorization": f"Bearer {g.key}"}

    async def body():
        assert requests.post(g.http_url("/drain"), json={}, headers=auth, timeout=3).json()["message"] == "Gateway draining"
        assert readyz(g) == 503
        try:
            async with websockets.connect(g.ws_url("/x"), open_timeout=3):
                raise AssertionError("a drained gateway took a new client")
        except websockets.InvalidStatusCode as e:
            assert e.status_code == 503
        r = requests.post(g.http_url("/undrain"), json={}, headers=auth, timeout=3)
        assert r.status_code == 200 and r.json()["message"] == "Gateway accepting again"
        assert readyz(g) == 200
        async with websockets.connect(g.ws_url("/x")) as ws:
            assert await echo_ok(ws, "back")

    asyncio.run(body())
