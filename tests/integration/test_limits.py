"""Connection limit: with --max-connections N the N+1th client gets HTTP 503
before the upgrade; a slot freed is a slot available again."""

import json

import websockets

from harness import run, wait_for
from rawws import Closed, RawClient

N = 3


def try_upgrade(port):
    c = RawClient(port)
    try:
        return c.handshake(expect=None)
    finally:
        c.close()


def test_max_connections(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--max-connections", N])

    async def body():
        conns = [await websockets.connect(g.ws_url(f"/c{i}")) for i in range(N)]
        for i, ws in enumerate(conns):
            await ws.send(f"{i}")
            assert await ws.recv() == f"{i}"
        wait_for(lambda: g.connections() == N, 5, what=f"{N} connections")

        # The N+1th: HTTP 503 with a JSON error, no upgrade.
        try:
            ans = try_upgrade(g.ws_port)
        except Closed as e:
            raise AssertionError(f"closed without an HTTP answer: {e}")
        assert ans.status == 503, ans
        assert isinstance(json.loads(ans.body).get("error"), str), ans
        # The library client sees the same.
        try:
            async with websockets.connect(g.ws_url("/extra")):
                raise AssertionError("the N+1th client was upgraded")
        except websockets.InvalidStatusCode as e:
            assert e.status_code == 503
        # The admitted ones are unaffected.
        for i, ws in enumerate(conns):
            await ws.send(f"again{i}")
            assert await ws.recv() == f"again{i}"

        # One leaves: one more may come in.
        await conns.pop().close()
        wait_for(lambda: g.connections() == N - 1, 5, what="the slot to be freed")
        async with websockets.connect(g.ws_url("/late")) as ws:
            await ws.send("in")
            assert await ws.recv() == "in"
        for ws in conns:
            await ws.close()

    run(body())
    assert g.get("/healthz").status_code == 200
