"""Handshake negotiation through the gateway: subprotocols and
permessage-deflate (passed only without context takeover), other
extensions removed from the offer."""

import json
import os
import random
import string

import websockets

from harness import run
from rawws import OP_BINARY, OP_TEXT, RawClient


async def whoami_ws(ws):
    await ws.send("whoami")
    return json.loads(await ws.recv())


def test_subprotocol_offer_and_choice(gateway):
    async def body():
        async with websockets.connect(gateway.ws_url(), subprotocols=["chat.v2", "chat.v1"]) as ws:
            info = await whoami_ws(ws)
            assert info["headers"]["Sec-WebSocket-Protocol"] == "chat.v2, chat.v1"
            # The backend chose chat.v1 (the only one it speaks); so does the client.
            assert info["subprotocol"] == "chat.v1"
            assert ws.subprotocol == "chat.v1"
            assert ws.response_headers["Sec-WebSocket-Protocol"] == "chat.v1"

    run(body())


def test_no_subprotocol_offered_none_chosen(gateway):
    async def body():
        async with websockets.connect(gateway.ws_url()) as ws:
            info = await whoami_ws(ws)
            assert info["headers"]["Sec-WebSocket-Protocol"] is None
            assert ws.subprotocol is None
            assert "Sec-WebSocket-Protocol" not in ws.response_headers

    run(body())


def test_subprotocol_the_backend_does_not_speak(gateway):
    """The backend picks none: the client gets none (the connection stays
    usable, RFC 6455 4.2.2)."""
    c = RawClient(gateway.ws_port)
    try:
        ans = c.handshake(headers=[("Sec-WebSocket-Protocol", "mqtt")])
        assert ans.header("Sec-WebSocket-Protocol") is None
        c.send_frame(OP_TEXT, b"hello")
        assert c.recv_message() == (OP_TEXT, b"hello")
    finally:
        c.close()


def test_deflate_without_context_takeover(gateway):
    async def body():
        async with websockets.connect(gateway.ws_url()) as ws:  # offers deflate by default
            info = await whoami_ws(ws)
            offer = info["headers"]["Sec-WebSocket-Extensions"]
            assert offer is not None and "permessage-deflate" in offer
            assert "server_no_context_takeover" in offer
            answer = ws.response_headers["Sec-WebSocket-Extensions"]
            assert "permessage-deflate" in answer
            assert "client_no_context_takeover" in answer
            assert len(ws.extensions) == 1
            ext = ws.extensions[0]
            assert ext.name == "permessage-deflate"
            assert ext.local_no_context_takeover and ext.remote_no_context_takeover
            # Compressible messages round-trip, many in a row (no shared
            # context may be assumed on either side).
            rng = random.Random(7)
            for i in range(30):
                n = rng.choice([1, 100, 5000, 70000])
                text = "".join(rng.choice("abcab ") for _ in range(n))
                await ws.send(text)
                assert await ws.recv() == text
                data = os.urandom(n)
                await ws.send(data)
                assert await ws.recv() == data

    run(body())


def test_no_deflate_when_not_offered(gateway):
    async def body():
        async with websockets.connect(gateway.ws_url(), compression=None) as ws:
            info = await whoami_ws(ws)
            assert info["headers"]["Sec-WebSocket-Extensions"] is None
            assert "Sec-WebSocket-Extensions" not in ws.response_headers
            assert ws.extensions == []

    run(body())


def raw_offer(port, offer):
    c = RawClient(port)
    try:
        ans = c.handshake(headers=[("Sec-WebSocket-Extensions", offer)])
        c.send_frame(OP_TEXT, b"whoami")
        op, data = c.recv_message()  # inflated when the backend compressed it
        assert op == OP_TEXT
        return ans, json.loads(data)
    finally:
        c.close()


def test_unknown_extensions_are_removed(gateway):
    ans, info = raw_offer(gateway.ws_port, "x-webkit-deflate-frame, x-foo; a=1")
    assert info["headers"]["Sec-WebSocket-Extensions"] is None
    assert ans.header("Sec-WebSocket-Extensions") is None


def test_unknown_extensions_removed_deflate_kept(gateway):
    ans, info = raw_offer(gateway.ws_port, "x-foo; a=1, permessage-deflate; client_max_window_bits, mux")
    offer = info["headers"]["Sec-WebSocket-Extensions"]
    assert "x-foo" not in offer and "mux" not in offer
    assert "permessage-deflate" in offer and "server_no_context_takeover" in offer
    answer = ans.header("Sec-WebSocket-Extensions")
    assert "permessage-deflate" in answer and "client_no_context_takeover" in answer


def test_raw_deflate_message_round_trip(gateway):
    """A hand-compressed message (RSV1) passes through untouched."""
    import zlib

    c = RawClient(gateway.ws_port)
    try:
        c.handshake(headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        text = ("".join(random.choice(string.ascii_lowercase[:4]) for _ in range(3000))).encode()
        comp = zlib.compressobj(wbits=-15)
        payload = comp.compress(text) + comp.flush(zlib.Z_SYNC_FLUSH)
        assert payload.endswith(b"\x00\x00\xff\xff")
        c.send_frame(OP_TEXT, payload[:-4], rsv=4)
        assert c.recv_message() == (OP_TEXT, text)
        c.send_frame(OP_BINARY, b"\x00\x01plain")
        assert c.recv_message() == (OP_BINARY, b"\x00\x01plain")
    finally:
        c.close()


def test_offer_that_already_has_server_no_context_takeover(gateway):
    """The parameter is not added twice (RFC 7692 7: a repeated parameter
    makes the offer invalid)."""
    ans, info = raw_offer(gateway.ws_port,
                          "permessage-deflate; server_no_context_takeover; client_max_window_bits")
    offer = info["headers"]["Sec-WebSocket-Extensions"]
    assert offer.count("server_no_context_takeover") == 1, offer
    assert "client_no_context_takeover" in ans.header("Sec-WebSocket-Extensions")


def test_several_deflate_offers(gateway):
    ans, info = raw_offer(gateway.ws_port,
                          "permessage-deflate; client_max_window_bits=10, permessage-deflate")
    offer = info["headers"]["Sec-WebSocket-Extensions"]
    for one in offer.split(","):
        assert "permessage-deflate" in one and "server_no_context_takeover" in one, offer
    answer = ans.header("Sec-WebSocket-Extensions")
    assert answer.count("permessage-deflate") == 1
    assert "client_no_context_takeover" in answer


def test_backend_declining_deflate(make_gateway, make_backend):
    b = make_backend("echo", args=["--no-deflate"])
    g = make_gateway([b])

    async def body():
        async with websockets.connect(g.ws_url()) as ws:  # offers deflate
            info = await whoami_ws(ws)
            assert "permessage-deflate" in info["headers"]["Sec-WebSocket-Extensions"]
            assert "Sec-WebSocket-Extensions" not in ws.response_headers
            assert ws.extensions == []
            text = "compressible " * 1000
            await ws.send(text)
            assert await ws.recv() == text

    run(body())
