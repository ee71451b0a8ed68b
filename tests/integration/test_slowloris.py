"""Slowloris: clients that send their request one byte a second, to hold a
connection open for free, are cut at --handshake-timeout (408 or the TCP
close) on both ports, while 1,000 WebSocket clients keep echoing
throughout with no failure and no stall."""

import asyncio
import base64
import os
import time

import pytest
import websockets

from harness import run, wait_for

CLIENTS = 1000
BATCH = 100
SLOW_WS = 10
SLOW_HTTP = 10
TIMEOUT = 2.0
# How late a cut may be seen: the gateway's timer wheel fires at most a
# tick late, and this process's loop is busy with a thousand clients.
SLACK = 1.5
PAUSE = 0.25  # between one echo and the next message of a client


def slow_request(port, upgrade):
    key = base64.b64encode(os.urandom(16)).decode()
    if upgrade:
        return (f"GET /slow HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    return f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


async def slowloris(port, upgrade):
    """Sends a request one byte a second until the gateway ends the
    connection. Returns (seconds until the end, bytes received, bytes
    sent)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = slow_request(port, upgrade)
    sent = 0

    async def trickle():
        nonlocal sent
        for i in range(len(request)):
            writer.write(request[i:i + 1])
            sent += 1
            await asyncio.sleep(1.0)

    feeding = asyncio.create_task(trickle())
    received = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT + SLACK + 3)
            if not chunk:
                break
            received += chunk
    except ConnectionResetError:
        pass
    finally:
        elapsed = loop.time() - t0
        feeding.cancel()
        writer.close()
    return elapsed, received, sent


@pytest.mark.timeout(90)
def test_slow_requests_are_cut_while_a_thousand_clients_echo(make_gateway, make_backend):
    b1, b2 = make_backend("echo", "one"), make_backend("echo", "two")
    g = make_gateway([b1, b2], ["--handshake-timeout", f"{int(TIMEOUT * 1000)}ms"])

    async def body():
        conns = []
        for start in range(0, CLIENTS, BATCH):
            conns += await asyncio.gather(*(
                websockets.connect(g.ws_url(f"/c{i}"), compression=None, ping_interval=None,
                                   open_timeout=20)
                for i in range(start, start + BATCH)))
        wait_for(lambda: g.connections() == CLIENTS, 10, what="all clients counted")

        stop = asyncio.Event()
        failures = []

        async def echo(i, ws):
            """Echoes until told to stop; returns (round trips, longest
            wait for one echo)."""
            n = 0
            longest = 0.0
            try:
                while not stop.is_set():
                    msg = f"{i}:{n}"
                    t = time.monotonic()
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), 5)
                    longest = max(longest, time.monotonic() - t)
                    if got != msg:
                        failures.append((i, n, msg, got))
                        break
                    n += 1
                    await asyncio.sleep(PAUSE)
            except Exception as e:  # noqa: BLE001 - any failure is reported below
                failures.append((i, n, repr(e)))
            return n, longest

        t_start = time.monotonic()
        echoes = [asyncio.create_task(echo(i, ws)) for i, ws in enumerate(conns)]
        slow = await asyncio.gather(*([slowloris(g.ws_port, True) for _ in range(SLOW_WS)] +
                                      [slowloris(g.http_port, False) for _ in range(SLOW_HTTP)]))
        # The echoing goes on a little past the last cut.
        await asyncio.sleep(0.5)
        stop.set()
        results = await asyncio.gather(*echoes)
        window = time.monotonic() - t_start
        assert failures == [], failures[:10]
        # Everyone kept echoing through the whole window, and no echo waited
        # anywhere near a handshake timeout.
        counts = [n for n, _ in results]
        slowest = max(w for _, w in results)
        assert min(counts) >= 2, (min(counts), window)
        assert slowest < TIMEOUT, slowest
        # The connections are intact after it.
        for ws in conns[:: CLIENTS // 20]:
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), 5) == "after"
        await asyncio.gather(*(ws.close() for ws in conns))
        return slow, counts, slowest, window

    slow, counts, slowest, window = run(body(), timeout=80)
    print(f"{sum(counts)} echoes in {window:.1f}s (slowest {slowest * 1000:.0f}ms); cuts after "
          f"{min(s[0] for s in slow):.2f}..{max(s[0] for s in slow):.2f}s; "
          f"{sum(1 for s in slow if s[1])} of {len(slow)} answered 408")
    for i, (elapsed, received, sent) in enumerate(slow):
        port = "ws" if i < SLOW_WS else "http"
        # Cut at the deadline: not before, and not much after.
        assert TIMEOUT - 0.1 <= elapsed <= TIMEOUT + SLACK, (port, elapsed)
        # A few bytes got in; the answer, if any, is 408.
        assert sent <= TIMEOUT + SLACK + 1, (port, sent)
        assert received == b"" or received.startswith(b"HTTP/1.1 408 "), (port, received[:200])
    # Only the slow connections are gone; the thousand are gone after close.
    wait_for(lambda: g.connections() == 0, 15, what="all sessions to end")
    assert g.get("/healthz").status_code == 200
