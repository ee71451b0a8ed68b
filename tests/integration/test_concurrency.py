"""Many clients at once: 1,000 concurrent sessions, each sending 100
sequence-numbered messages; every echo arrives, complete and in order."""

import asyncio
import time

import pytest
import websockets

from harness import run, wait_for

CLIENTS = 1000
MESSAGES = 100
BATCH = 100


@pytest.mark.timeout(120)
def test_thousand_clients_hundred_messages_each(make_gateway, make_backend):
    b1, b2 = make_backend("echo", "one"), make_backend("echo", "two")
    g = make_gateway([b1, b2])

    async def body():
        conns = []
        # Open in batches so that the listen backlog is never the question.
        for start in range(0, CLIENTS, BATCH):
            batch = await asyncio.gather(*(
                websockets.connect(g.ws_url(f"/c?clientId=c{i}"), compression=None,
                                   ping_interval=None, open_timeout=20)
                for i in range(start, start + BATCH)))
            conns += batch
        assert len(conns) == CLIENTS
        wait_for(lambda: g.connections() == CLIENTS, 10, what="all clients counted")

        async def client(i, ws):
            async def sender():
                for seq in range(MESSAGES):
                    await ws.send(f"{i}:{seq}:" + "p" * (seq % 7))

            async def receiver():
                for seq in range(MESSAGES):
                    got = await ws.recv()
                    assert got == f"{i}:{seq}:" + "p" * (seq % 7), (i, seq, got)

            await asyncio.gather(sender(), receiver())
            return i

        t0 = time.monotonic()
        done = await asyncio.gather(*(client(i, ws) for i, ws in enumerate(conns)))
        elapsed = time.monotonic() - t0
        assert sorted(done) == list(range(CLIENTS))
        await asyncio.gather(*(ws.close() for ws in conns))
        return elapsed

    elapsed = run(body(), timeout=100)
    print(f"{CLIENTS * MESSAGES} echoes in {elapsed:.1f}s")
    wait_for(lambda: g.connections() == 0, 10, what="all sessions to end")
    # Both backends took a share of the sessions.
    assert len(b1.events("open")) + len(b2.events("open")) == CLIENTS
    assert abs(len(b1.events("open")) - len(b2.events("open"))) <= 2
