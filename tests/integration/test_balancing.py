"""Balancing over registered backends: round-robin by default, the other
policies of --balance, and each backend's maxConnections (503 "NO SERVER
AVAILABLE" before the upgrade when every backend is full, or none is
registered)."""

import asyncio
import json
from collections import Counter

import pytest
import websockets

from fleet import FAST, Fleet, post, registration, servers
from harness import run, wait_for
from rawws import RawClient


@pytest.fixture
def seeds(tmp_path):
    """seeds(gateway, id, args...): a registered seed_backend.py."""
    with Fleet(tmp_path) as fleet:
        yield fleet


async def open_many(url_of, n, batch=10):
    """Opens n sessions (url_of(i)) `batch` at a time, keeps them open, and
    returns (sockets, the server each one is on)."""
    conns = []
    for i in range(0, n, batch):
        opening = (websockets.connect(url_of(j)) for j in range(i, min(n, i + batch)))
        conns += await asyncio.gather(*opening)
    names = []
    for ws in conns:
        await ws.send("whoami")
        names.append(json.loads(await ws.recv())["server"])
    return conns, names


async def close_all(conns):
    await asyncio.gather(*(ws.close() for ws in conns))


def upgrade_status(g, path="/"):
    c = RawClient(g.ws_port)
    try:
        return c.handshake(path, expect=None)
    finally:
        c.close()


def test_round_robin_spreads_evenly(make_gateway, seeds):
    g = make_gateway(args=FAST)
    ids = {seeds(g, f"r{i}").id for i in range(3)}

    async def body():
        conns, names = await open_many(lambda i: g.ws_url(f"/rr/{i}"), 30)
        await close_all(conns)
        return names

    counts = Counter(run(body()))
    assert set(counts) == ids, counts
    assert all(9 <= n <= 11 for n in counts.values()), counts


def test_round_robin_alternates_for_sequential_clients(make_gateway, seeds):
    g = make_gateway(args=FAST)
    for i in range(3):
        seeds(g, f"q{i}")

    async def body():
        names = []
        for i in range(9):
            async with websockets.connect(g.ws_url(f"/seq/{i}")) as ws:
                await ws.send("whoami")
                names.append(json.loads(await ws.recv())["server"])
        return names

    names = run(body())
    # Every window of three consecutive sessions covers the three backends.
    assert all(len(set(names[i:i + 3])) == 3 for i in range(len(names) - 2)), names


@pytest.mark.parametrize("policy", ["least-connections", "power-of-two", "consistent-hash"])
def test_other_policies_start_and_route(make_gateway, seeds, policy):
    g = make_gateway(args=FAST + ["--balance", policy])
    ids = {seeds(g, f"{policy[:2]}{i}").id for i in range(3)}

    async def body():
        conns, names = await open_many(lambda i: g.ws_url(f"/p/{i}?clientId=user{i}"), 30, batch=1)
        # Without a clientId too.
        async with websockets.connect(g.ws_url("/anonymous")) as ws:
            await ws.send("whoami")
            anonymous = json.loads(await ws.recv())["server"]
        await close_all(conns)
        return names, anonymous

    names, anonymous = run(body())
    counts = Counter(names)
    assert set(counts) == ids, counts
    assert anonymous in ids
    if policy == "least-connections":
        # Sessions opened one by one and all kept: the least loaded each time.
        assert all(n == 10 for n in counts.values()), counts
    elif policy == "consistent-hash":
        # Bounded loads: no backend above 1.25 times the average (+1).
        assert max(counts.values()) <= 13, counts
    else:
        assert max(counts.values()) <= 15, counts


def test_max_connections_is_respected(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "small", "--max-connections", 2)
    seeds(g, "big", "--max-connections", 100)

    async def body():
        conns, names = await open_many(lambda i: g.ws_url(f"/m/{i}"), 12, batch=12)
        counts = Counter(names)
        assert counts["small"] == 2 and counts["big"] == 10, counts
        assert servers(g)["small"]["activeConnections"] == 2
        # One of small's sessions ends: its slot is taken again, and only one.
        i = names.index("small")
        await conns.pop(i).close()
        wait_for(lambda: servers(g)["small"]["activeConnections"] == 1, 3, what="the slot to free")
        more, more_names = await open_many(lambda i: g.ws_url(f"/more/{i}"), 6, batch=6)
        assert Counter(more_names)["small"] == 1, more_names
        assert servers(g)["small"]["activeConnections"] == 2
        await close_all(conns + more)

    run(body())


def test_all_full_is_503_before_the_upgrade(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "f1", "--max-connections", 2)
    seeds(g, "f2", "--max-connections", 2)

    async def body():
        conns, names = await open_many(lambda i: g.ws_url(f"/full/{i}"), 4)
        assert Counter(names) == {"f1": 2, "f2": 2}, names
        for _ in range(3):
            ans = upgrade_status(g, "/one-more?clientId=late")
            assert ans.status == 503, ans
            assert json.loads(ans.body) == {"error": "NO SERVER AVAILABLE"}, ans
        # The admitted ones are unaffected.
        for ws in conns:
            await ws.send("still")
            assert await ws.recv() == "still"
        # A slot frees: the next client gets in.
        await conns.pop().close()
        wait_for(lambda: sum(s["activeConnections"] for s in servers(g).values()) == 3, 3,
                 what="the slot to free")
        async with websockets.connect(g.ws_url("/now")) as ws:
            await ws.send("in")
            assert await ws.recv() == "in"
        await close_all(conns)

    run(body())


def test_no_backend_registered_is_503(make_gateway):
    g = make_gateway(args=FAST)
    ans = upgrade_status(g, "/?clientId=nobody-home")
    assert ans.status == 503, ans
    assert json.loads(ans.body) == {"error": "NO SERVER AVAILABLE"}, ans

    # The same once the last one unregistered.
    assert post(g, "/register", registration(g, "x", ws_port=9, http_port=9)).status_code == 200
    assert post(g, "/unregister", {"serverId": "x", "authKey": g.key}).status_code == 200
    ans = upgrade_status(g, "/")
    assert ans.status == 503, ans
    assert json.loads(ans.body) == {"error": "NO SERVER AVAILABLE"}, ans
