"""Sticky sessions: a client that comes back with the same key (the
clientId query parameter by default; a header or a cookie with
--sticky-key) lands on the same backend, whoever connected in between.
Two sockets with one key share a backend, not an upstream."""

import asyncio
import json

import pytest
import websockets

from fleet import FAST, Fleet, whoami
from harness import run


@pytest.fixture
def seeds(tmp_path):
    """seeds(gateway, id, args...): a registered seed_backend.py."""
    with Fleet(tmp_path) as fleet:
        yield fleet


async def interleave_others(g, n, **kw):
    """n sessions of other clients (other keys, or none), one after the other."""
    for i in range(n):
        path = f"/other/{i}" + (f"?clientId=other{i}" if i % 2 else "")
        await whoami(g.ws_url(path), **kw)


def test_same_client_id_comes_back_to_its_backend(make_gateway, seeds):
    g = make_gateway(args=FAST)
    for i in range(3):
        seeds(g, f"s{i}")
    ids = [f"player-{i}" for i in range(6)]

    async def body():
        first = {cid: (await whoami(g.ws_url(f"/game?clientId={cid}")))["server"] for cid in ids}
        for rnd in range(3):
            await interleave_others(g, 2 + rnd)
            for cid in ids:
                info = await whoami(g.ws_url(f"/game/again?clientId={cid}&round={rnd}"))
                assert info["server"] == first[cid], (cid, rnd, info["server"], first[cid])
        return first

    first = run(body())
    # The keys were spread, so round-robin alone would not have sent them back.
    assert len(set(first.values())) == 3, first


def test_two_sockets_with_one_client_id_share_a_backend_not_an_upstream(make_gateway, seeds):
    g = make_gateway(args=FAST)
    for i in range(3):
        seeds(g, f"t{i}")

    async def body():
        url = g.ws_url("/twin?clientId=twin")
        async with websockets.connect(url) as a, websockets.connect(url) as b:
            await a.send("whoami")
            await b.send("whoami")
            ia, ib = json.loads(await a.recv()), json.loads(await b.recv())
            assert ia["server"] == ib["server"], (ia, ib)
            assert ia["conn"] != ib["conn"], "both sockets share one upstream"
            for i in range(50):
                await a.send(f"a{i}")
                await b.send(f"b{i}")
            got_a = [await asyncio.wait_for(a.recv(), 5) for _ in range(50)]
            got_b = [await asyncio.wait_for(b.recv(), 5) for _ in range(50)]
            assert got_a == [f"a{i}" for i in range(50)]
            assert got_b == [f"b{i}" for i in range(50)]
            # Nothing else is queued for either.
            for ws in (a, b):
                await ws.send("end")
                assert await asyncio.wait_for(ws.recv(), 5) == "end"
            # One leaving does not end the other.
            await a.close()
            await b.send("alone")
            assert await asyncio.wait_for(b.recv(), 5) == "alone"

    run(body())


def test_without_client_id_there_is_no_stickiness(make_gateway, seeds):
    g = make_gateway(args=FAST)
    for i in range(3):
        seeds(g, f"n{i}")

    async def body():
        return [(await whoami(g.ws_url("/anon")))["server"] for _ in range(6)]

    names = run(body())
    assert set(names) == {"n0", "n1", "n2"}, names


@pytest.mark.parametrize("source", ["header", "cookie"])
def test_sticky_key_from_header_or_cookie(make_gateway, seeds, source):
    key_flag = "header:X-Client-Id" if source == "header" else "cookie:sid"
    g = make_gateway(args=FAST + ["--sticky-key", key_flag])
    for i in range(3):
        seeds(g, f"{source[0]}{i}")

    def carrying(key):
        if source == "header":
            return {"extra_headers": {"X-Client-Id": key}}
        return {"extra_headers": {"Cookie": f"theme=dark; sid={key}; lang=en"}}

    async def body():
        keys = [f"k{i}" for i in range(6)]
        first = {k: (await whoami(g.ws_url("/h"), **carrying(k)))["server"] for k in keys}
        assert len(set(first.values())) == 3, first
        await interleave_others(g, 4)
        for k in keys:
            assert (await whoami(g.ws_url("/h2"), **carrying(k)))["server"] == first[k], k
        # The query parameter is no longer the key: the same clientId spreads.
        spread = {(await whoami(g.ws_url("/q?clientId=same")))["server"] for _ in range(3)}
        assert len(spread) == 3, spread

    run(body())


def test_client_id_follows_its_session_to_the_backend_it_moved_to(make_gateway, seeds):
    g = make_gateway(args=FAST)
    backends = {b.id: b for b in (seeds(g, "m0"), seeds(g, "m1"), seeds(g, "m2"))}

    async def body():
        async with websockets.connect(g.ws_url("/mv?mode=seq&clientId=mover")) as ws:
            await ws.send("1")
            old = (await ws.recv()).split(":")[0]
            backends[old].kill()
            # What was in flight at the kill may be lost: ask until the
            # answer comes from elsewhere.
            server = old
            for i in range(2, 100):
                await ws.send(str(i))
                try:
                    server = (await asyncio.wait_for(ws.recv(), 0.5)).split(":")[0]
                except asyncio.TimeoutError:
                    continue
                if server != old:
                    break
            assert server != old
        # Reconnecting: the key now sticks to where the session went.
        for _ in range(3):
            await interleave_others(g, 1)
            assert (await whoami(g.ws_url("/mv?clientId=mover")))["server"] == server

    run(body())
