"""Limits on what one connection may send and on how many may be open,
each checked at its configured value and one past it: --max-header-size
(431), --max-message-size (1009), --max-connections and
--max-connections-per-ip (503), --max-pending-handshakes (503),
--handshake-timeout (408), and a quick look at --write-high-water."""

import asyncio
import base64
import os
import time

import pytest
import websockets

from fromaddr import json_error, upgrade_from, ws_from
from harness import run, wait_for
from rawws import OP_TEXT, Closed, RawClient, accept_for, encode_frame


def sized_upgrade(port, size, path="/"):
    """An upgrade request of exactly `size` bytes, the final CRLF
    included, padded with one X-Pad header. Returns (bytes, key)."""
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nX-Pad: ")
    pad = size - len(head) - 4
    assert pad > 0
    raw = (head + "p" * pad + "\r\n\r\n").encode()
    assert len(raw) == size
    return raw, key


def sized_get(port, size, path="/healthz"):
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nX-Pad: "
    raw = (head + "p" * (size - len(head) - 4) + "\r\n\r\n").encode()
    assert len(raw) == size
    return raw


def exchange(port, raw, timeout=5.0):
    c = RawClient(port, timeout=timeout)
    try:
        c.send(raw)
        return c.read_http(timeout=timeout)
    finally:
        c.close()


# ---- --max-header-size ---------------------------------------------------


@pytest.mark.parametrize("limit,flag", [(1024, "1KiB"), (4096, "4096")])
def test_max_header_size_upgrade(make_gateway, echo_backend, limit, flag):
    g = make_gateway([echo_backend], ["--max-header-size", flag])
    for size in (limit - 1, limit):
        raw, key = sized_upgrade(g.ws_port, size)
        c = RawClient(g.ws_port)
        try:
            c.send(raw)
            ans = c.read_http()
            assert ans.status == 101, (size, ans)
            assert ans.header("Sec-WebSocket-Accept") == accept_for(key)
            c.send_frame(OP_TEXT, f"at {size}".encode())
            assert c.recv_message() == (OP_TEXT, f"at {size}".encode())
        finally:
            c.close()
    raw, _ = sized_upgrade(g.ws_port, limit + 1)
    json_error(exchange(g.ws_port, raw), 431)
    raw, _ = sized_upgrade(g.ws_port, limit + 1000)
    json_error(exchange(g.ws_port, raw), 431)


def test_head_at_the_limit_with_a_frame_behind_it(make_gateway, echo_backend):
    """A head exactly at the limit and a frame in the same write: the
    bytes after the head are the first message, not part of the head."""
    g = make_gateway([echo_backend], ["--max-header-size", "1KiB"])
    raw, key = sized_upgrade(g.ws_port, 1024)
    c = RawClient(g.ws_port)
    try:
        c.send(raw + encode_frame(OP_TEXT, b"right behind the head " * 10))
        ans = c.read_http()
        assert ans.status == 101, ans
        assert c.recv_message() == (OP_TEXT, b"right behind the head " * 10)
    finally:
        c.close()


@pytest.mark.parametrize("size,status", [(1024, 101), (1025, 431)])
def test_max_header_size_in_two_pieces(make_gateway, echo_backend, size, status):
    """The limit holds wherever the head is cut between two reads."""
    g = make_gateway([echo_backend], ["--max-header-size", "1KiB"])
    for cut in (1, 500, size - 5, size - 4, size - 3, size - 2, size - 1):
        raw, _ = sized_upgrade(g.ws_port, size)
        c = RawClient(g.ws_port)
        try:
            c.send(raw[:cut])
            time.sleep(0.02)
            c.send(raw[cut:])
            ans = c.read_http()
        finally:
            c.close()
        assert ans.status == status, (cut, ans)


@pytest.mark.parametrize("limit,flag", [(1024, "1KiB"), (4096, "4KiB")])
def test_max_header_size_http_port(make_gateway, limit, flag):
    g = make_gateway([], ["--max-header-size", flag])
    for size in (limit - 1, limit):
        ans = exchange(g.http_port, sized_get(g.http_port, size))
        assert ans.status == 200, (size, ans)
    json_error(exchange(g.http_port, sized_get(g.http_port, limit + 1)), 431)


def test_max_header_size_each_pipelined_request(make_gateway):
    """On a kept-alive connection every request has the whole limit."""
    g = make_gateway([], ["--max-header-size", "1KiB"])

    def get(size, last=False):
        head = (f"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                f"{'Connection: close' if last else 'X-Keep: 1'}\r\nX-Pad: ")
        return (head + "p" * (size - len(head) - 4) + "\r\n\r\n").encode()

    c = RawClient(g.http_port)
    try:
        c.send(get(1024) + get(1024) + get(1024, last=True))
        assert [c.read_http().status for _ in range(3)] == [200, 200, 200]
    finally:
        c.close()
    c = RawClient(g.http_port)
    try:
        c.send(get(1024) + get(1025, last=True))
        assert [c.read_http().status for _ in range(2)] == [200, 431]
    finally:
        c.close()


# ---- --max-message-size --------------------------------------------------


async def close_code(ws, timeout=5):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as e:
        return e.code if e.rcvd is None else e.rcvd.code


@pytest.mark.parametrize("limit", [5000, 70000])
def test_max_message_size(make_gateway, echo_backend, limit):
    g = make_gateway([echo_backend], ["--max-message-size", str(limit)])

    async def body():
        async with websockets.connect(g.ws_url(), compression=None, max_size=None) as ws:
            for msg in ("t" * limit, b"b" * limit, b"c" * (limit - 1), ""):
                await ws.send(msg)
                assert await ws.recv() == msg
            # Fragments count together.
            half = limit // 2
            await ws.send([b"f" * half, b"g" * (limit - half)])
            assert await ws.recv() == b"f" * half + b"g" * (limit - half)
            await ws.send("t" * (limit + 1))
            assert await close_code(ws) == 1009
        async with websockets.connect(g.ws_url(), compression=None, max_size=None) as ws:
            await ws.send([b"f" * half, b"g" * (limit - half + 1)])
            assert await close_code(ws) == 1009

    run(body())


# ---- --max-connections -----------------------------------------------------


def test_max_connections_exact(make_gateway, echo_backend):
    n = 4
    g = make_gateway([echo_backend], ["--max-connections", n])

    async def body():
        conns = []
        for i in range(n):
            ws = await websockets.connect(g.ws_url(f"/c{i}"))
            await ws.send(f"{i}")
            assert await ws.recv() == f"{i}"
            conns.append(ws)
        wait_for(lambda: g.connections() == n, 5, what=f"{n} connections")
        for _ in range(2):
            ans = upgrade_from(g.ws_port, "127.0.0.1")
            json_error(ans, 503, "gateway is at its connection limit")
            assert ans.header("Retry-After") == "1", ans
        await conns.pop().close()
        wait_for(lambda: g.connections() == n - 1, 5, what="a slot to be freed")
        ws = await websockets.connect(g.ws_url("/late"))
        await ws.send("late")
        assert await ws.recv() == "late"
        conns.append(ws)
        json_error(upgrade_from(g.ws_port, "127.0.0.1"), 503)
        for ws in conns:
            await ws.close()

    run(body())


# ---- --max-connections-per-ip ----------------------------------------------


@pytest.mark.parametrize("exempt", ["", "::1"])
def test_max_connections_per_ip(make_gateway, echo_backend, exempt):
    n = 3
    g = make_gateway([echo_backend], ["--max-connections-per-ip", n,
                                      "--rate-limit-exempt", exempt])

    async def body():
        mine = []
        for i in range(n):
            ws = await ws_from(g.ws_url(f"/two{i}"), "127.0.0.2")
            await ws.send("hi")
            assert await ws.recv() == "hi"
            mine.append(ws)
        # The N+1th from 127.0.0.2: 503, and again.
        for _ in range(2):
            json_error(upgrade_from(g.ws_port, "127.0.0.2"), 503,
                       "too many connections from your address")
        # Other addresses are counted on their own.
        others = []
        for source in ("127.0.0.3", "127.0.0.3", "127.0.0.1"):
            ws = await ws_from(g.ws_url("/other"), source)
            await ws.send(source)
            assert await ws.recv() == source
            others.append(ws)
        # The ones in are unaffected.
        for ws in mine:
            await ws.send("still")
            assert await ws.recv() == "still"
        # One of 127.0.0.2's leaves: it may open one more, and only one.
        await mine.pop().close()

        def one_more():
            ans, c = upgrade_from(g.ws_port, "127.0.0.2", keep=True)
            if ans.status == 101:
                return c
            c.close()
            json_error(ans, 503)
            return None

        extra = wait_for(one_more, 5, interval=0.05, what="127.0.0.2's slot to be freed")
        json_error(upgrade_from(g.ws_port, "127.0.0.2"), 503)
        extra.close()
        for ws in mine + others:
            await ws.close()

    run(body())


def test_loopback_is_exempt_from_per_ip_limit_by_default(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--max-connections-per-ip", 1])

    async def body():
        conns = [await ws_from(g.ws_url(), "127.0.0.2") for _ in range(4)]
        for i, ws in enumerate(conns):
            await ws.send(f"{i}")
            assert await ws.recv() == f"{i}"
        for ws in conns:
            await ws.close()

    run(body())


def xff(ip):
    return [("X-Forwarded-For", ip)]


def test_per_ip_limit_ignores_forwarded_for_from_untrusted_peers(make_gateway, echo_backend):
    """A client cannot dodge the limit by naming other addresses."""
    g = make_gateway([echo_backend], ["--max-connections-per-ip", 1, "--rate-limit-exempt", ""])
    ans, c = upgrade_from(g.ws_port, "127.0.0.2", keep=True, headers=xff("203.0.113.5"))
    try:
        assert ans.status == 101, ans
        for ip in ("203.0.113.6", "198.51.100.1, 203.0.113.7"):
            json_error(upgrade_from(g.ws_port, "127.0.0.2", headers=xff(ip)), 503,
                       "too many connections from your address")
    finally:
        c.close()


def test_per_ip_limit_behind_a_trusted_proxy(make_gateway, echo_backend):
    """Behind a trusted proxy the limit applies to the clients it names,
    even though the proxy's own address (loopback) is exempt."""
    g = make_gateway([echo_backend], ["--max-connections-per-ip", 1,
                                      "--trusted-proxies", "127.0.0.0/8"])
    ans, c = upgrade_from(g.ws_port, "127.0.0.2", keep=True, headers=xff("203.0.113.5"))
    try:
        assert ans.status == 101, ans
        json_error(upgrade_from(g.ws_port, "127.0.0.2", headers=xff("203.0.113.5")), 503,
                   "too many connections from your address")
        # Another client behind the proxy, and the proxy itself, get in.
        assert upgrade_from(g.ws_port, "127.0.0.2", headers=xff("203.0.113.6")).status == 101
        assert upgrade_from(g.ws_port, "127.0.0.2").status == 101
    finally:
        c.close()


def test_refused_upgrade_does_not_hold_a_per_ip_slot(make_gateway, make_backend):
    """--help: the limit counts *open WebSocket connections*. An upgrade
    the backend refused is none, even while its client has not yet closed
    the socket: the next upgrade from that address must get the backend's
    answer again, not 503."""
    b = make_backend("reject")
    g = make_gateway([b], ["--max-connections-per-ip", 1, "--rate-limit-exempt", ""])
    ans, c = upgrade_from(g.ws_port, "127.0.0.2", keep=True)
    try:
        assert ans.status == 403, ans
        assert c.wait_eof(3), "the gateway did not end the refused connection"
        again = upgrade_from(g.ws_port, "127.0.0.2")
        assert again.status == 403, again
    finally:
        c.close()


# ---- --max-pending-handshakes -----------------------------------------------


def test_max_pending_handshakes(make_gateway, echo_backend):
    n = 3
    g = make_gateway([echo_backend], ["--max-pending-handshakes", n])
    silent = []
    try:
        # N-1 connections that say nothing: an upgrade still gets through.
        for _ in range(n - 1):
            silent.append(RawClient(g.ws_port))
        wait_for(lambda: g.connections() == n - 1, 5, what="the silent connections")
        c = RawClient(g.ws_port)
        c.handshake()
        c.send_frame(OP_TEXT, b"in")
        assert c.recv_message() == (OP_TEXT, b"in")
        # The Nth silent one: now N are upgrading, the next is refused.
        silent.append(RawClient(g.ws_port))
        wait_for(lambda: g.connections() == n + 1, 5, what="the last silent connection")
        for _ in range(2):
            ans = upgrade_from(g.ws_port, "127.0.0.1")
            json_error(ans, 503, "too many connections are still upgrading")
        # The open session is no pending handshake and keeps working.
        c.send_frame(OP_TEXT, b"still")
        assert c.recv_message() == (OP_TEXT, b"still")
        # One silent connection leaves: the next upgrade gets through.
        silent.pop().close()
        wait_for(lambda: g.connections() == n, 5, what="the silent connection to go")
        c2 = RawClient(g.ws_port)
        c2.handshake()
        c2.close()
        c.close()
    finally:
        for s in silent:
            s.close()


# ---- --handshake-timeout ------------------------------------------------------


def test_handshake_timeout_408_at_the_deadline_not_before(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--handshake-timeout", "1s"])
    raw, _ = sized_upgrade(g.ws_port, 300)
    # A request that takes 60% of the timeout to arrive is served.
    c = RawClient(g.ws_port, timeout=5)
    try:
        t0 = time.monotonic()
        for i in range(0, len(raw), 50):
            c.send(raw[i:i + 50])
            time.sleep(0.1)
        assert time.monotonic() - t0 < 0.9
        assert c.read_http().status == 101
    finally:
        c.close()
    # One that never finishes: 408 at the deadline.
    c = RawClient(g.ws_port, timeout=5)
    try:
        t0 = time.monotonic()
        c.send(raw[:100])
        ans = c.read_http(timeout=5)
        elapsed = time.monotonic() - t0
        json_error(ans, 408)
        assert 0.95 <= elapsed <= 2.0, elapsed
        assert c.wait_eof(3)
    finally:
        c.close()


def test_handshake_timeout_on_the_http_port(make_gateway):
    """An HTTP request that never finishes is dropped at the deadline."""
    g = make_gateway([], ["--handshake-timeout", "1s"])
    c = RawClient(g.http_port, timeout=5)
    try:
        t0 = time.monotonic()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            ans = c.read_http(timeout=4)
            assert ans.status == 408, ans
        except Closed:
            pass
        elapsed = time.monotonic() - t0
        assert 0.95 <= elapsed <= 2.0, elapsed
    finally:
        c.close()


# ---- --write-high-water --------------------------------------------------------


MiB = 1 << 20


@pytest.mark.timeout(40)
def test_write_high_water_holds_a_bounded_amount(make_gateway, make_backend):
    """Quick check (test_backpressure.py has the rest): with a small
    --write-high-water, a client that reads nothing stalls its backend
    after a bounded amount, and reading again releases it."""
    b = make_backend("stream", args=["--total", 256 * MiB, "--chunk", 16 * 1024])
    g = make_gateway([b], ["--write-high-water", "64KiB", "--slow-consumer-timeout", "30s"])
    baseline = g.rss_kib()
    c = RawClient(g.ws_port, rcvbuf=32 * 1024, timeout=10)
    try:
        c.handshake("/firehose")
        b.wait_event("open")

        def stalled():
            p1 = b.progress()
            time.sleep(0.3)
            return p1 > 0 and b.progress() == p1

        wait_for(stalled, 15, interval=0, what="the backend's sends to stall")
        stalled_at = b.progress()
        assert stalled_at < 64 * MiB, stalled_at
        assert g.rss_kib() - baseline < 32 * 1024, (baseline, g.rss_kib())
        # Reading again: the backend moves on.
        deadline = time.monotonic() + 10
        got = 0
        while b.progress() < stalled_at + 8 * MiB:
            assert time.monotonic() < deadline, (stalled_at, b.progress())
            c.sock.settimeout(2)
            got += len(c.sock.recv(1 << 20))
        assert got > 0
    finally:
        c.close()
