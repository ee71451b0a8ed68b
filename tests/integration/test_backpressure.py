"""Backpressure: a client that stops reading makes the gateway stop reading
its backend (the backend's sends stall), memory stays bounded, and after
--slow-consumer-timeout the client is closed with 1008."""

import socket
import time

import pytest

from harness import wait_for
from rawws import OP_CLOSE, RawClient, encode_frame, parse_frames

MiB = 1024 * 1024
TOTAL = 200 * MiB


@pytest.mark.timeout(60)
def test_slow_consumer_stalls_backend_bounds_memory_and_gets_1008(make_gateway, make_backend):
    b = make_backend("stream", args=["--total", TOTAL, "--chunk", 64 * 1024])
    g = make_gateway([b], ["--write-high-water", "1MiB", "--slow-consumer-timeout", "1s",
                           "--close-timeout", "10s"])
    baseline = g.rss_kib()

    c = RawClient(g.ws_port, rcvbuf=64 * 1024, timeout=10)
    try:
        c.handshake("/firehose")
        b.wait_event("open")
        t_open = time.monotonic()
        # The client reads nothing from here on. The backend's progress must
        # level off far below the 200 MB it wants to send.
        peak_rss = baseline

        def stalled():
            nonlocal peak_rss
            peak_rss = max(peak_rss, g.rss_kib())
            p1 = b.progress()
            time.sleep(0.2)  # a window to see whether the backend still advances
            p2 = b.progress()
            return p1 > 0 and p1 == p2

        wait_for(stalled, 10, interval=0, what="the backend's sends to stall")
        stalled_at = b.progress()
        assert stalled_at < 100 * MiB, f"backend sent {stalled_at} bytes to a client that reads nothing"
        peak_rss = max(peak_rss, g.rss_kib())
        assert peak_rss - baseline < 64 * 1024, (baseline, peak_rss)

        # The slow-consumer clock runs out: the gateway ends the session.
        # (The log says code=1006 when no close frame could be sent.)
        closed = g.wait_log(r'connection closed .*reason="slow consumer"', timeout=10)[0]
        elapsed = time.monotonic() - t_open
        assert 1.0 <= elapsed <= 6.0, elapsed
        # Still stalled: the backend never got to send it all.
        assert b.progress() < 100 * MiB
        peak_rss = max(peak_rss, g.rss_kib())
        assert peak_rss - baseline < 64 * 1024, (baseline, peak_rss)

        # Now read what is there: complete frames, then either a close frame
        # with 1008, or (when the stream was cut mid-frame) just the TCP close.
        data = c.read_until_eof(timeout=20)
    finally:
        c.close()
    frames, rest = parse_frames(data)
    assert frames, "nothing was delivered to the client"
    closes = [f for f in frames if f.opcode == OP_CLOSE]
    if closes:
        assert frames[-1].opcode == OP_CLOSE and len(closes) == 1
        assert frames[-1].close_code == 1008, frames[-1].close_code
        assert rest == b""
        assert "code=1008" in closed, closed
    else:
        assert rest != b"", "stream ended at a frame boundary without a close frame"
        assert "code=1006" in closed, closed
    assert all(f.opcode == 2 or f.opcode == 0 or f.opcode == OP_CLOSE for f in frames)
    # The backend's session ends as well, well short of the full stream.
    ev = b.wait_event("close", timeout=10)[0]
    assert ev["sent"] < 100 * MiB
    wait_for(lambda: g.connections() == 0, 10, what="the session to be released")


@pytest.mark.timeout(60)
def test_reading_client_gets_the_whole_stream(make_gateway, make_backend):
    """The same stream to a client that does read arrives complete: the
    pauses of backpressure lose nothing."""
    total = 32 * MiB
    b = make_backend("stream", args=["--total", total, "--chunk", 64 * 1024])
    g = make_gateway([b], ["--write-high-water", "256KiB", "--slow-consumer-timeout", "5s"])
    c = RawClient(g.ws_port, rcvbuf=64 * 1024, timeout=10)
    got = 0
    try:
        c.handshake("/firehose")
        deadline = time.monotonic() + 40
        while got < total:
            assert time.monotonic() < deadline, f"only {got} of {total} bytes"
            f = c.recv_frame(timeout=10)
            assert f is not None and f.opcode == 2, f
            assert len(f.payload) == 64 * 1024
            got += len(f.payload)
            if got % (4 * MiB) == 0:
                time.sleep(0.05)  # a slow reader, but a reader
    finally:
        c.close()
    assert got == total
    b.wait_event("stream-done")


@pytest.mark.timeout(60)
def test_backend_that_stops_reading_pauses_the_client(make_gateway, make_backend):
    """The other direction. A stream backend with nothing to send reads
    until its library's queue of 32 messages is full, then stops reading:
    the client's sends must stall instead of piling up in the gateway, and
    after --slow-consumer-timeout the session ends."""
    b = make_backend("stream", args=["--total", 0])
    g = make_gateway([b], ["--write-high-water", "1MiB", "--slow-consumer-timeout", "1s",
                           "--close-timeout", "2s"])
    baseline = g.rss_kib()
    c = RawClient(g.ws_port, timeout=10)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    frame = encode_frame(2, bytes(range(256)) * 256)  # 64 KiB binary, masked
    sent = 0
    try:
        c.handshake("/sink")
        b.wait_event("open")
        c.sock.settimeout(0.5)
        deadline = time.monotonic() + 20
        view = memoryview(frame * 16)
        while sent < TOTAL and time.monotonic() < deadline:
            try:
                n = c.sock.send(view[sent % len(view):])
            except socket.timeout:
                break  # nothing taken for half a second: stalled
            except OSError:
                break  # the gateway already ended the session
            sent += n
        assert sent < 100 * MiB, f"the gateway took {sent} bytes for a backend that reads nothing"
        assert g.rss_kib() - baseline < 64 * 1024
        g.wait_log(r"connection closed .*code=1011", timeout=10)
        assert c.wait_eof(timeout=8), "client connection not closed"
    finally:
        c.close()
    wait_for(lambda: g.connections() == 0, 10, what="the session to be released")
