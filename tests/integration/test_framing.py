"""RFC 6455 framing through the gateway with a real client library: echo
at every length encoding, message size limits, fragmentation, ping/pong,
close codes and reasons end to end."""

import asyncio
import base64
import os

import pytest
import websockets

from harness import run
from rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawClient, encode_frame

MiB = 1024 * 1024
SIZES = [0, 125, 126, 65535, 65536, 16 * MiB]


def text_of(n):
    return base64.b64encode(os.urandom(n * 3 // 4 + 3)).decode()[:n]


async def closed_code(ws, timeout=10):
    """Waits for the connection to end; returns (code, reason)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("size", SIZES, ids=[str(s) for s in SIZES])
def test_echo_sizes(gateway, kind, size):
    """compression=None so that the frame on the wire has exactly this
    payload length (7-bit, 16-bit and 64-bit length encodings)."""
    msg = text_of(size) if kind == "text" else os.urandom(size)

    async def body():
        async with websockets.connect(gateway.ws_url(), compression=None, max_size=None) as ws:
            await ws.send(msg)
            got = await ws.recv()
            assert type(got) is type(msg) and len(got) == len(msg)
            assert got == msg

    run(body(), timeout=40)


def test_echo_sizes_with_deflate(gateway):
    """Up to 1 MiB: random data grows a little when deflated, so a 16 MiB
    message would cross the (wire-size) limit."""

    async def body():
        async with websockets.connect(gateway.ws_url(), max_size=None) as ws:
            for size in SIZES[:-1] + [MiB]:
                for msg in (text_of(size), os.urandom(size)):
                    await ws.send(msg)
                    assert await ws.recv() == msg

    run(body(), timeout=50)


@pytest.mark.timeout(90)
def test_default_max_message_size_exact_passes_one_more_gets_1009(gateway):
    async def body():
        async with websockets.connect(gateway.ws_url(), compression=None, max_size=None) as ws:
            exact = os.urandom(16 * MiB)
            await ws.send(exact)
            assert await ws.recv() == exact
        async with websockets.connect(gateway.ws_url(), compression=None, max_size=None) as ws:
            try:
                await ws.send(os.urandom(16 * MiB + 1))
            except websockets.ConnectionClosed:
                pass
            code, _ = await closed_code(ws)
            assert code == 1009

    run(body(), timeout=80)


def test_smaller_max_message_size(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--max-message-size", "1KiB"])

    async def body():
        async with websockets.connect(g.ws_url(), compression=None) as ws:
            await ws.send(b"x" * 1024)
            assert await ws.recv() == b"x" * 1024
            await ws.send("y" * 1024)
            assert await ws.recv() == "y" * 1024
            await ws.send("z" * 1025)
            code, _ = await closed_code(ws)
            assert code == 1009

    run(body())


def test_max_message_size_counts_all_fragments(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--max-message-size", "1KiB"])

    async def body():
        async with websockets.connect(g.ws_url(), compression=None) as ws:
            await ws.send([b"a" * 512, b"b" * 512])
            assert await ws.recv() == b"a" * 512 + b"b" * 512
            await ws.send([b"a" * 600, b"b" * 600])
            code, _ = await closed_code(ws)
            assert code == 1009

    run(body())


def test_max_message_size_from_the_backend(make_gateway, echo_backend):
    """The limit holds either way: a backend's oversized message gets the
    backend a 1009 and ends the client's session with an error close."""
    g = make_gateway([echo_backend], ["--max-message-size", "1KiB"])

    async def body():
        async with websockets.connect(g.ws_url(), compression=None) as ws:
            await ws.send("emit 1024")
            assert await ws.recv() == b"e" * 1024
            await ws.send("emit 1025")
            code, _ = await closed_code(ws)
            assert code not in (None, 1000, 1005, 1006), code

    run(body())
    assert echo_backend.wait_event("close")[0]["code"] == 1009


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_fragmented_messages_arrive_whole(gateway, compression):
    async def body():
        async with websockets.connect(gateway.ws_url(), compression=compression, max_size=None) as ws:
            await ws.send(["frag1-", "frag2-", "", "frag3"])
            assert await ws.recv() == "frag1-frag2-frag3"
            parts = [os.urandom(n) for n in (1, 125, 126, 70000, 0, 3)]
            await ws.send(parts)
            assert await ws.recv() == b"".join(parts)

            async def agen():
                for i in range(50):
                    yield f"<{i}>"

            await ws.send(agen())
            assert await ws.recv() == "".join(f"<{i}>" for i in range(50))

    run(body())


def test_control_frame_between_fragments(gateway):
    """A ping between two fragments is answered and the message still
    arrives whole (RFC 6455 5.4)."""
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
        c.send_frame(OP_TEXT, b"hello ", fin=False)
        c.send_frame(OP_PING, b"mid")
        c.send_frame(OP_CONT, b"wor", fin=False)
        c.send_frame(OP_CONT, b"ld")
        frames = []
        while not (any(f.opcode == OP_PONG for f in frames) and frames and
                   any(f.fin and f.opcode in (OP_TEXT, OP_CONT) for f in frames)):
            f = c.recv_frame()
            assert f is not None and len(frames) < 10, frames
            frames.append(f)
        pong = [f for f in frames if f.opcode == OP_PONG][0]
        assert pong.payload == b"mid"
        data = b"".join(f.payload for f in frames if f.opcode in (OP_TEXT, OP_CONT))
        assert data == b"hello world"
    finally:
        c.close()


def test_ping_from_client_gets_pong(gateway):
    async def body():
        async with websockets.connect(gateway.ws_url()) as ws:
            for payload in (b"", b"abc", os.urandom(125)):
                waiter = await ws.ping(payload)
                await asyncio.wait_for(waiter, 5)
            # Messages still flow afterwards.
            await ws.send("after")
            assert await ws.recv() == "after"

    run(body())


def test_raw_ping_pong_payload(gateway):
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
        c.send_frame(OP_PING, b"\x00payload\xff")
        f = c.recv_frame()
        assert f.opcode == OP_PONG and f.payload == b"\x00payload\xff"
    finally:
        c.close()


def test_client_close_code_and_reason_reach_the_backend(gateway, echo_backend):
    async def body():
        ws = await websockets.connect(gateway.ws_url())
        await ws.send("hi")
        assert await ws.recv() == "hi"
        await ws.close(4001, "bye")
        # The close handshake completes end to end.
        assert ws.close_code == 4001

    run(body())
    ev = echo_backend.wait_event("close")[0]
    assert (ev["code"], ev["reason"]) == (4001, "bye")


def test_backend_close_code_and_reason_reach_the_client(make_gateway, make_backend):
    b = make_backend("close", args=["--code", "4002", "--reason", "later"])
    g = make_gateway([b])

    async def body():
        async with websockets.connect(g.ws_url()) as ws:
            await ws.send("go")
            return await closed_code(ws)

    assert run(body()) == (4002, "later")
    ev = b.wait_event("close")[0]
    assert ev["code"] == 4002


@pytest.mark.parametrize("code,reason", [(1000, ""), (1000, "normal"), (3000, "registered"),
                                          (4000, "h\u00e9llo \u2713"), (4999, "r" * 123)])
def test_close_codes_pass_both_ways(make_gateway, make_backend, code, reason):
    b = make_backend("close", args=["--code", str(code), "--reason", reason])
    g = make_gateway([b])

    async def body():
        async with websockets.connect(g.ws_url()) as ws:
            await ws.send("go")
            return await closed_code(ws)

    assert run(body()) == (code, reason)


def test_invalid_utf8_text_is_refused_by_the_backend_by_default(gateway):
    """Without --validate-utf8 the gateway passes text through and the
    backend answers invalid UTF-8 with 1007, which reaches the client."""
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
        c.send_frame(OP_TEXT, b"bad \xff\xfe utf-8")
        f = c.expect_close()
        assert f is not None and f.close_code == 1007, f
    finally:
        c.close()


def test_validate_utf8_in_the_gateway(make_gateway, echo_backend):
    g = make_gateway([echo_backend], env={"VALIDATE_UTF8": "true"})
    c = RawClient(g.ws_port)
    try:
        c.handshake()
        c.send_frame(OP_TEXT, "ok \u2713".encode())
        assert c.recv_message() == (OP_TEXT, "ok \u2713".encode())
        # Invalid across a fragment boundary: the check must span fragments.
        c.send_frame(OP_TEXT, b"split \xe2\x9c", fin=False)
        c.send_frame(OP_CONT, b"\x93 fine")
        assert c.recv_message() == (OP_TEXT, "split \u2713 fine".encode())
        c.send_frame(OP_TEXT, b"bad \xc0\xaf")
        f = c.expect_close()
        assert f is not None and f.close_code == 1007, f
    finally:
        c.close()


def test_close_without_code_reaches_the_backend_as_1005(gateway, echo_backend):
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
        c.send_frame(OP_CLOSE, b"")
        f = c.expect_close()
        assert f is not None and f.opcode == OP_CLOSE
        assert f.close_code in (None, 1000, 1005), f.close_code
        assert c.wait_eof(timeout=3)
    finally:
        c.close()
    assert echo_backend.wait_event("close")[0]["code"] == 1005


def test_unsolicited_pong_is_harmless(gateway):
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
        c.send_frame(OP_PONG, b"unasked")
        c.send_frame(OP_TEXT, b"after pong")
        assert c.recv_message() == (OP_TEXT, b"after pong")
    finally:
        c.close()


def test_many_frames_in_one_segment(gateway):
    """Hundreds of frames in one write (more than one relay batch), data
    and control mixed: every one is answered, in order."""
    c = RawClient(gateway.ws_port, timeout=10)
    try:
        c.handshake()
        burst = b"".join(encode_frame(OP_TEXT, f"m{i}".encode()) + encode_frame(OP_PING, f"p{i}".encode())
                         for i in range(300))
        c.send(burst)
        texts, pongs = [], []
        while len(texts) < 300 or len(pongs) < 300:
            f = c.recv_frame(timeout=10)
            assert f is not None, (len(texts), len(pongs))
            (texts if f.opcode == OP_TEXT else pongs).append(f.payload)
        assert texts == [f"m{i}".encode() for i in range(300)]
        assert pongs == [f"p{i}".encode() for i in range(300)]
    finally:
        c.close()


def test_thousand_one_byte_fragments(gateway):
    c = RawClient(gateway.ws_port, timeout=10)
    try:
        c.handshake()
        frames = [encode_frame(OP_BINARY, b"\x00", fin=False)]
        frames += [encode_frame(OP_CONT, bytes([i % 256]), fin=False) for i in range(1, 999)]
        frames += [encode_frame(OP_CONT, b"\xff")]
        c.send(b"".join(frames))
        op, data = c.recv_message(timeout=10)
        assert op == OP_BINARY
        assert data == b"\x00" + bytes(i % 256 for i in range(1, 999)) + b"\xff"
    finally:
        c.close()


def test_frames_split_at_every_byte(gateway):
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
        for payload in (b"x" * 5, b"y" * 200, b"z" * 70000):
            frame = encode_frame(OP_BINARY, payload)
            step = 1 if len(payload) < 1000 else 997
            for i in range(0, len(frame), step):
                c.send(frame[i:i + step])
            assert c.recv_message(timeout=10) == (OP_BINARY, payload)
    finally:
        c.close()


def test_backend_fragmented_message_arrives_whole(gateway):
    async def body():
        async with websockets.connect(gateway.ws_url()) as ws:
            await ws.send("emitfrag alpha- beta- gamma")
            assert await ws.recv() == "alpha-beta-gamma"

    run(body())
