"""Clients that vanish (mid-handshake, mid-message, with a reset) are
cleaned up, while a concurrent client keeps echoing through all of it."""

import asyncio
import threading

import websockets

from harness import wait_for
from rawws import OP_BINARY, OP_TEXT, RawClient, encode_frame

ROUNDS = 10


class Echoer:
    """A websockets client echoing in its own thread for the whole test."""

    def __init__(self, url):
        self.url = url
        self.count = 0
        self.error = None
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        async def body():
            async with websockets.connect(self.url) as ws:
                self.connected.set()
                i = 0
                while not self.stop.is_set() and i < 100000:
                    msg = f"steady-{i}"
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), 5)
                    assert got == msg, (got, msg)
                    self.count += 1
                    i += 1
                    await asyncio.sleep(0.002)

        try:
            asyncio.run(asyncio.wait_for(body(), 60))
        except Exception as e:  # reported by finish()
            self.error = e
        finally:
            self.connected.set()

    def finish(self):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        assert self.error is None, repr(self.error)
        return self.count


def vanish_mid_handshake(port, reset):
    c = RawClient(port)
    c.send(b"GET /gone HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConn")
    c.reset() if reset else c.close()


def vanish_after_handshake(port, reset):
    c = RawClient(port)
    c.handshake("/gone")
    c.send_frame(OP_TEXT, b"one message")
    assert c.recv_message() == (OP_TEXT, b"one message")
    c.reset() if reset else c.close()


def vanish_mid_message(port, reset):
    c = RawClient(port)
    c.handshake("/gone")
    frame = encode_frame(OP_BINARY, b"z" * 10000)
    c.send(frame[:3000])  # header and part of the payload, no more
    c.reset() if reset else c.close()


def vanish_mid_fragmented_message(port, reset):
    c = RawClient(port)
    c.handshake("/gone")
    c.send(encode_frame(OP_TEXT, b"first part", fin=False))
    c.reset() if reset else c.close()


def vanish_before_backend_answer(port, reset):
    """A complete request, gone before reading the 101."""
    c = RawClient(port)
    c.send(b"GET /gone HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    c.reset() if reset else c.close()


VANISHERS = [vanish_mid_handshake, vanish_after_handshake, vanish_mid_message,
             vanish_mid_fragmented_message, vanish_before_backend_answer]


def test_vanishing_clients_are_cleaned_up(gateway):
    steady = Echoer(gateway.ws_url("/steady"))
    assert steady.connected.wait(10)
    wait_for(lambda: gateway.connections() == 1, 5, what="the steady client")
    # Held sessions are counted, and vanish from the count when reset.
    held = []
    for i in range(5):
        c = RawClient(gateway.ws_port)
        c.handshake("/held")
        held.append(c)
    wait_for(lambda: gateway.connections() == 6, 5, what="the held clients to be counted")
    for i, c in enumerate(held):
        if i % 2:
            c.reset()
        else:
            c.send(encode_frame(OP_BINARY, b"q" * 5000)[:100])
            c.reset()
    wait_for(lambda: gateway.connections() == 1, 10, what="reset clients to be released")
    for r in range(ROUNDS):
        for vanish in VANISHERS:
            for reset in (False, True):
                vanish(gateway.ws_port, reset)
    # Everyone but the steady client is gone.
    wait_for(lambda: gateway.connections() == 1, 10, what="connections to return to 1")
    before = steady.count
    wait_for(lambda: steady.count >= before + 20, 10, what="the steady client to keep echoing")
    assert steady.finish() > 0
    wait_for(lambda: gateway.connections() == 0, 10, what="connections to return to 0")
    assert gateway.get("/healthz").status_code == 200


def test_vanishing_clients_release_their_backend_sessions(gateway, echo_backend):
    """Each backend session opened for a vanished client is closed too."""
    for reset in (False, True):
        for _ in range(5):
            vanish_after_handshake(gateway.ws_port, reset)
            vanish_mid_message(gateway.ws_port, reset)
    echo_backend.wait_event("open", count=20, timeout=10)
    echo_backend.wait_event("close", count=20, timeout=10)
    assert len(echo_backend.events("open")) == 20
    wait_for(lambda: gateway.connections() == 0, 10, what="connections to return to 0")


def test_many_resets_in_parallel(gateway):
    steady = Echoer(gateway.ws_url("/steady"))
    assert steady.connected.wait(10)

    def burst():
        for _ in range(20):
            vanish_after_handshake(gateway.ws_port, True)
            vanish_mid_handshake(gateway.ws_port, True)

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    wait_for(lambda: gateway.connections() == 1, 10, what="connections to return to 1")
    before = steady.count
    wait_for(lambda: steady.count >= before + 20, 10, what="the steady client to keep echoing")
    steady.finish()
