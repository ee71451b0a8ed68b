"""Routing on WS_PORT: any path goes to a backend of the default service,
path and query unchanged, round-robin over the --backend entries."""

import json

import pytest
import websockets

from harness import run


async def whoami(url, **kw):
    async with websockets.connect(url, **kw) as ws:
        await ws.send("whoami")
        return json.loads(await ws.recv())


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/chat",
        "/deep/nested/path/",
        "/room?clientId=c1",
        "/a/b?x=1&y=two&empty=&x=3",
        "/enc%20oded/%E2%9C%93?q=%26%3D&plus=a+b",
    ],
)
def test_path_and_query_pass_unchanged(gateway, echo_backend, path):
    info = run(whoami(gateway.ws_url(path)))
    assert info["path"] == path
    assert info["backend"] == echo_backend.name


def test_round_robin_over_backends(make_backend, make_gateway):
    b1, b2 = make_backend("echo", "one"), make_backend("echo", "two")
    g = make_gateway([b1, b2])

    async def body():
        return [(await whoami(g.ws_url(f"/n{i}")))["backend"] for i in range(6)]

    seen = run(body())
    assert seen.count("one") == 3 and seen.count("two") == 3, seen
    # Sequential sessions alternate.
    assert all(a != b for a, b in zip(seen, seen[1:])), seen


def test_messages_reach_the_backend_of_their_session(make_backend, make_gateway):
    """Two sessions on two backends stay each on their own backend."""
    b1, b2 = make_backend("echo", "one"), make_backend("echo", "two")
    g = make_gateway([b1, b2])

    async def body():
        async with websockets.connect(g.ws_url("/a")) as x, websockets.connect(g.ws_url("/b")) as y:
            names = set()
            for ws in (x, y):
                await ws.send("whoami")
                names.add(json.loads(await ws.recv())["backend"])
            assert names == {"one", "two"}
            for i in range(20):
                for ws in (x, y):
                    await ws.send("whoami")
            got = {id(x): set(), id(y): set()}
            for i in range(20):
                for ws in (x, y):
                    got[id(ws)].add(json.loads(await ws.recv())["backend"])
            assert len(got[id(x)]) == 1 and len(got[id(y)]) == 1

    run(body())
