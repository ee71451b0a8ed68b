"""Liveness: the gateway pings a silent client and closes it when no pong
comes; a client that answers pings stays connected."""

import asyncio
import time

import websockets

from harness import run
from rawws import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawClient

PING_MS, PONG_MS = 300, 300
FLAGS = ["--ping-interval", f"{PING_MS}ms", "--pong-timeout", f"{PONG_MS}ms", "--close-timeout", "1s"]
SLACK = 1.0


def test_client_that_never_answers_pings_is_closed(make_gateway, echo_backend):
    g = make_gateway([echo_backend], FLAGS)
    c = RawClient(g.ws_port, timeout=10)
    try:
        c.handshake()
        t0 = time.monotonic()
        first = c.recv_frame(timeout=5)
        t_ping = time.monotonic() - t0
        assert first is not None and first.opcode == OP_PING, first
        assert len(first.payload) == 12, first.payload
        assert t_ping >= PING_MS / 1000 * 0.8, t_ping
        # No pong from us: the end comes (a close frame or the TCP close).
        ended = None
        frames = [first]
        while ended is None:
            f = c.recv_frame(timeout=5)
            if f is None or f.opcode == OP_CLOSE:
                ended = time.monotonic() - t0
            frames.append(f)
            assert len(frames) < 20, frames
        assert ended <= (PING_MS + PONG_MS) / 1000 + SLACK, ended
        assert all(f is None or f.opcode in (OP_PING, OP_CLOSE) for f in frames), frames
        # And the socket is released without our help.
        assert c.wait_eof(timeout=3)
    finally:
        c.close()
    g.wait_log(r"connection closed .*code=", timeout=3)


def test_raw_client_that_answers_pings_stays(make_gateway, echo_backend):
    g = make_gateway([echo_backend], FLAGS)
    c = RawClient(g.ws_port, timeout=10)
    try:
        c.handshake()
        pings = 0
        deadline = time.monotonic() + 5 * PING_MS / 1000
        while time.monotonic() < deadline:
            f = c.recv_frame(timeout=3)
            assert f is not None and f.opcode == OP_PING, f
            pings += 1
            c.send_frame(OP_PONG, f.payload)
        assert pings >= 3
        c.send_frame(OP_TEXT, b"alive")
        assert c.recv_message() == (OP_TEXT, b"alive")
    finally:
        c.close()


def test_library_client_answering_pings_stays_connected(make_gateway, echo_backend):
    g = make_gateway([echo_backend], FLAGS)

    async def body():
        # ping_interval=None: the client sends nothing of its own, so only
        # its automatic pongs keep the session alive.
        async with websockets.connect(g.ws_url(), ping_interval=None) as ws:
            await asyncio.sleep(6 * PING_MS / 1000)  # several ping intervals of silence
            assert ws.open
            await ws.send("still connected")
            assert await ws.recv() == "still connected"

    run(body())
    assert "did not answer a ping" not in g.stderr()


def test_idle_timeout_closes_silent_sessions_despite_pongs(make_gateway, echo_backend):
    g = make_gateway([echo_backend], FLAGS + ["--idle-timeout", "1s"])

    async def body():
        async with websockets.connect(g.ws_url(), ping_interval=None) as ws:
            await ws.send("one")
            assert await ws.recv() == "one"
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                pass
            return time.monotonic() - t0, ws.close_code

    elapsed, code = run(body())
    assert 0.8 <= elapsed <= 1 + SLACK, elapsed
    assert code in (1000, 1001), code  # a close frame, not a dropped socket
