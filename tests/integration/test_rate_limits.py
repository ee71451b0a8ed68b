"""Rate limits: token buckets per client address for upgrades
(--rate-limit-upgrades, --rate-limit-upgrade-burst) and HTTP requests
(--rate-limit-requests, --rate-limit-request-burst), answered 429 with
Retry-After and a JSON error; --rate-limit-exempt (loopback by default);
and per connection --message-rate/--message-burst with the close (1008)
and drop actions.

A bucket of rate R and burst B starts full, so after B quick takes the
next token comes 1/R after the first take. The tests check both sides of
that instant: refused at half of it, admitted just after it. The limited
clients use addresses other than 127.0.0.1 (fromaddr.py), so that the
harness's own polling never spends their tokens."""

import asyncio
import math
import re
import time

import pytest
import requests
import websockets

from fromaddr import http_from, json_error, raw_from, upgrade_from, ws_from
from harness import run, wait_for

UPGRADE_429 = "too many upgrades from your address; slow down"
REQUEST_429 = "too many requests from your address; slow down"


def sleep_until(t):
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


def retry_after(ans, rate):
    """Retry-After: whole seconds, at least 1. wsgate rounds the wait up
    and adds a millisecond, so a wait of exactly 1/R = 1 s reads "2":
    allow one second more than ceil(1/R)."""
    value = ans.header("Retry-After")
    assert value is not None and value.isdigit(), ans
    assert 1 <= int(value) <= max(1, math.ceil(1 / rate)) + 1, ans
    return int(value)


def sample(text, name, labels=""):
    """The value of one sample of a Prometheus text (None when absent)."""
    series = name + ("{" + labels + "}" if labels else "")
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def metric(g, name, labels=""):
    """One sample of GET /metrics, asked from 127.0.0.1."""
    value = sample(requests.get(g.http_url("/metrics"), timeout=3).text, name, labels)
    assert value is not None, f"no {name}{{{labels}}} in /metrics"
    return value


# ---- upgrades ---------------------------------------------------------------


@pytest.mark.parametrize("rate,burst", [(1, 5), (2, 3)])
def test_upgrade_rate_and_burst(make_gateway, echo_backend, rate, burst):
    g = make_gateway([echo_backend], ["--rate-limit-upgrades", rate,
                                      "--rate-limit-upgrade-burst", burst,
                                      "--rate-limit-exempt", ""])
    period = 1.0 / rate
    limited_before = metric(g, "wsgate_rate_limited_total")
    t_first = time.monotonic()
    for i in range(burst):
        ans = upgrade_from(g.ws_port, "127.0.0.2", path=f"/burst{i}")
        assert ans.status == 101, (i, ans)
    assert time.monotonic() - t_first < period / 2, "the burst was too slow to judge the rate"
    # The B+1th, right away: 429 with Retry-After and a JSON error.
    ans = upgrade_from(g.ws_port, "127.0.0.2")
    json_error(ans, 429, UPGRADE_429)
    retry_after(ans, rate)
    # Another address has its own bucket.
    assert upgrade_from(g.ws_port, "127.0.0.3").status == 101
    # Half a period after the first: still refused (the library sees it too).
    sleep_until(t_first + period / 2)
    json_error(upgrade_from(g.ws_port, "127.0.0.2"), 429, UPGRADE_429)

    async def refused():
        with pytest.raises(websockets.InvalidStatusCode) as e:
            async with ws_from(g.ws_url(), "127.0.0.2"):
                pass
        return e.value.status_code

    assert run(refused()) == 429
    # One period after the first: one more token, one more upgrade.
    sleep_until(t_first + period + 0.15)
    ans, c = upgrade_from(g.ws_port, "127.0.0.2", keep=True)
    try:
        assert ans.status == 101, ans
        # ... and only one.
        json_error(upgrade_from(g.ws_port, "127.0.0.2"), 429, UPGRADE_429)
    finally:
        c.close()
    # Every 429 is counted: three above and the library's one.
    wait_for(lambda: metric(g, "wsgate_rate_limited_total") - limited_before == 4, 3,
             what="the 429s to be counted")
    assert metric(g, "websocket_errors_total", 'type="rate_limited"') == \
        metric(g, "wsgate_rate_limited_total")


def test_upgrade_rate_limit_keeps_open_sessions(make_gateway, echo_backend):
    """Being over the upgrade rate refuses new upgrades only."""
    g = make_gateway([echo_backend], ["--rate-limit-upgrades", 1,
                                      "--rate-limit-upgrade-burst", 2,
                                      "--rate-limit-exempt", ""])

    async def body():
        a = await ws_from(g.ws_url(), "127.0.0.2")
        b = await ws_from(g.ws_url(), "127.0.0.2")
        json_error(upgrade_from(g.ws_port, "127.0.0.2"), 429)
        for ws in (a, b):
            for i in range(5):
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
        await a.close()
        await b.close()

    run(body())


def xff(ip):
    return [("X-Forwarded-For", ip)]


def test_upgrade_rate_ignores_forwarded_for_from_untrusted_peers(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--rate-limit-upgrades", 1,
                                      "--rate-limit-upgrade-burst", 2,
                                      "--rate-limit-exempt", ""])
    statuses = [upgrade_from(g.ws_port, "127.0.0.2", headers=xff(f"203.0.113.{i}")).status
                for i in range(4)]
    assert statuses == [101, 101, 429, 429], statuses


def test_upgrade_rate_behind_a_trusted_proxy(make_gateway, echo_backend):
    """Each client a trusted proxy names has its own bucket, though the
    proxy (loopback, exempt by default) has none."""
    g = make_gateway([echo_backend], ["--rate-limit-upgrades", 1,
                                      "--rate-limit-upgrade-burst", 2,
                                      "--trusted-proxies", "127.0.0.0/8"])
    first = [upgrade_from(g.ws_port, "127.0.0.2", headers=xff("203.0.113.7")).status
             for _ in range(3)]
    second = [upgrade_from(g.ws_port, "127.0.0.2", headers=xff("203.0.113.8")).status
              for _ in range(2)]
    proxy = [upgrade_from(g.ws_port, "127.0.0.2").status for _ in range(4)]
    assert (first, second, proxy) == ([101, 101, 429], [101, 101], [101] * 4)


def test_zero_rates_mean_no_limit(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--rate-limit-upgrades", 0, "--rate-limit-upgrade-burst", 1,
                                      "--rate-limit-requests", 0, "--rate-limit-request-burst", 1,
                                      "--rate-limit-exempt", ""])
    ups, gets = hammer(g, "127.0.0.2", n=6)
    assert ups == [101] * 6 and gets == [200] * 6, (ups, gets)


# ---- HTTP requests ------------------------------------------------------------


@pytest.mark.parametrize("rate,burst", [(1, 4), (2, 3)])
def test_request_rate_and_burst(make_gateway, rate, burst):
    # The harness spent a token or two of 127.0.0.1 at start-up; the test
    # asks from other addresses and does not poll 127.0.0.1 after.
    g = make_gateway([], ["--rate-limit-requests", rate, "--rate-limit-request-burst", burst,
                          "--rate-limit-exempt", ""])
    period = 1.0 / rate
    keep = raw_from(g.http_port, "127.0.0.2")
    try:
        t_first = time.monotonic()
        for i in range(burst):
            ans = http_from(g.http_port, "127.0.0.2", client=keep)
            assert ans.status == 200, (i, ans)
        assert time.monotonic() - t_first < period / 2, "the burst was too slow to judge the rate"
        ans = http_from(g.http_port, "127.0.0.2", client=keep)
        json_error(ans, 429, REQUEST_429)
        retry_after(ans, rate)
        assert ans.header("Cache-Control") == "no-store"
        assert ans.header("X-Content-Type-Options") == "nosniff"
        # Any path counts, a new connection too.
        json_error(http_from(g.http_port, "127.0.0.2", "/health"), 429)
        json_error(http_from(g.http_port, "127.0.0.2", "/nowhere"), 429)
        # Another address is not affected.
        assert http_from(g.http_port, "127.0.0.4").status == 200
        sleep_until(t_first + period / 2)
        json_error(http_from(g.http_port, "127.0.0.2", client=keep), 429)
        # The refused requests left the keep-alive connection usable.
        sleep_until(t_first + period + 0.15)
        assert http_from(g.http_port, "127.0.0.2", client=keep).status == 200
        json_error(http_from(g.http_port, "127.0.0.2", client=keep), 429)
    finally:
        keep.close()
    # Five 429s, counted (asked from an address with tokens left).
    text = http_from(g.http_port, "127.0.0.6", "/metrics").body.decode()
    assert sample(text, "wsgate_rate_limited_total") == 5, text


def test_request_and_upgrade_buckets_are_separate(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--rate-limit-requests", 1,
                                      "--rate-limit-request-burst", 2,
                                      "--rate-limit-upgrades", 1,
                                      "--rate-limit-upgrade-burst", 2,
                                      "--rate-limit-exempt", ""])
    for _ in range(2):
        assert http_from(g.http_port, "127.0.0.2").status == 200
    json_error(http_from(g.http_port, "127.0.0.2"), 429)
    for _ in range(2):
        assert upgrade_from(g.ws_port, "127.0.0.2").status == 101
    json_error(upgrade_from(g.ws_port, "127.0.0.2"), 429)


# ---- exempt addresses -----------------------------------------------------------


TIGHT = ["--rate-limit-upgrades", 1, "--rate-limit-upgrade-burst", 1,
         "--rate-limit-requests", 1, "--rate-limit-request-burst", 1]


def hammer(g, source, n=8):
    """n upgrades and n requests from source, as fast as they go; returns
    the statuses."""
    ups = [upgrade_from(g.ws_port, source).status for _ in range(n)]
    gets = [http_from(g.http_port, source).status for _ in range(n)]
    return ups, gets


async def concurrent(g, source, n=3):
    """n sessions open at once from source, each echoing."""
    conns = [await ws_from(g.ws_url(), source) for _ in range(n)]
    for ws in conns:
        await ws.send("x")
        assert await ws.recv() == "x"
    for ws in conns:
        await ws.close()


def test_loopback_is_exempt_by_default(make_gateway, echo_backend):
    g = make_gateway([echo_backend], TIGHT + ["--max-connections-per-ip", 1])
    for source in ("127.0.0.1", "127.0.0.2", "127.0.0.250"):
        ups, gets = hammer(g, source)
        assert ups == [101] * 8 and gets == [200] * 8, (source, ups, gets)
    run(concurrent(g, "127.0.0.2"))


@pytest.mark.parametrize("exempt", ["127.0.0.3", "127.0.0.0/30", "10.0.0.0/8,127.0.0.3/32,::1"])
def test_exempt_list(make_gateway, echo_backend, exempt):
    g = make_gateway([echo_backend], TIGHT + ["--rate-limit-exempt", exempt])
    ups, gets = hammer(g, "127.0.0.3")
    assert ups == [101] * 8 and gets == [200] * 8, (ups, gets)
    # An address outside the list is limited.
    ups, gets = hammer(g, "127.0.0.9", n=3)
    assert ups == [101, 429, 429] and gets == [200, 429, 429], (ups, gets)


def test_exempt_address_not_counted_per_ip(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--max-connections-per-ip", 1,
                                      "--rate-limit-exempt", "127.0.0.3"])
    run(concurrent(g, "127.0.0.3"))

    async def limited():
        async with ws_from(g.ws_url(), "127.0.0.9"):
            json_error(upgrade_from(g.ws_port, "127.0.0.9"), 503)

    run(limited())


# ---- messages per connection -------------------------------------------------------


async def close_of(ws, timeout=5):
    """Reads until the connection closes; returns (code, reason, messages)."""
    got = []
    try:
        while True:
            got.append(await asyncio.wait_for(ws.recv(), timeout))
    except websockets.ConnectionClosed as e:
        frame = e.rcvd
        return (frame.code, frame.reason, got) if frame else (None, None, got)


@pytest.mark.parametrize("rate,burst", [(1, 5), (1, 1), (5, 20)])
def test_message_rate_close(make_gateway, echo_backend, rate, burst):
    g = make_gateway([echo_backend], ["--message-rate", rate, "--message-burst", burst])
    protocol_before = metric(g, "wsgate_protocol_errors_total")

    async def body():
        async with websockets.connect(g.ws_url(), ping_interval=None) as ws:
            t_open = time.monotonic()
            # The first B in a burst go through (each echo awaited).
            for i in range(burst):
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
            assert time.monotonic() - t_open < 0.5 / rate, "the burst was too slow to judge"
            # The B+1th: close 1008, and its echo never comes.
            await ws.send("one too many")
            code, reason, got = await close_of(ws)
            assert code == 1008, (code, reason)
            assert "rate" in reason, reason
            assert got == [], got

    run(body())
    wait_for(lambda: metric(g, "wsgate_protocol_errors_total") > protocol_before, 3,
             what="the close to be counted")
    g.wait_log(r"connection closed .*code=1008")


def test_message_rate_refills(make_gateway, echo_backend):
    """After 1/R the connection may send one more message, then no more."""
    g = make_gateway([echo_backend], ["--message-rate", 2, "--message-burst", 3])

    async def body():
        async with websockets.connect(g.ws_url(), ping_interval=None) as ws:
            t0 = time.monotonic()
            for i in range(3):
                await ws.send(f"m{i}")
            for i in range(3):
                assert await ws.recv() == f"m{i}"
            await asyncio.sleep(max(0, t0 + 0.5 + 0.15 - time.monotonic()))
            await ws.send("refilled")
            assert await ws.recv() == "refilled"
            await ws.send("too soon")
            code, _, got = await close_of(ws)
            assert code == 1008 and got == [], (code, got)

    run(body())


def test_message_rate_ignores_control_frames(make_gateway, echo_backend):
    """Pings are not messages: a connection at its limit still pings."""
    g = make_gateway([echo_backend], ["--message-rate", 1, "--message-burst", 2])

    async def body():
        async with websockets.connect(g.ws_url(), ping_interval=None) as ws:
            for i in range(2):
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
            for _ in range(5):
                await asyncio.wait_for(await ws.ping(), 3)
            await ws.send("over")
            code, _, _ = await close_of(ws)
            assert code == 1008

    run(body())


def drop_gateway(make_gateway, echo_backend, rate, burst):
    return make_gateway([echo_backend], ["--message-rate", rate, "--message-burst", burst,
                                         "--message-rate-action", "drop"])


async def send_burst_and_excess(ws, burst):
    """B messages, five more, and a fragmented one, all at once; returns
    when sent (the time it took must be far below 1/R)."""
    for i in range(burst):
        await ws.send(f"m{i}")
    for i in range(5):
        await ws.send(f"dropped{i}")
    await ws.send(["frag-a", "frag-b", "frag-c"])


def test_message_rate_drop(make_gateway, echo_backend):
    rate, burst = 2, 3
    g = drop_gateway(make_gateway, echo_backend, rate, burst)

    async def body():
        async with websockets.connect(g.ws_url(), ping_interval=None, compression=None) as ws:
            t0 = time.monotonic()
            await send_burst_and_excess(ws, burst)
            assert time.monotonic() - t0 < 0.25, "the burst was too slow to judge"
            got = [await asyncio.wait_for(ws.recv(), 3) for _ in range(burst)]
            assert got == [f"m{i}" for i in range(burst)]
            # Nothing else comes back, and the connection stays.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
            await asyncio.wait_for(await ws.ping(), 3)
            # After 1/R, one more message goes through, whole (no piece of
            # the dropped fragmented message before it).
            await asyncio.sleep(max(0, t0 + 1 / rate + 0.15 - time.monotonic()))
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), 3) == "after"
            await ws.send("dropped again")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
            assert ws.open
            await ws.close()
            assert ws.close_code == 1000

    run(body())
    assert g.proc.poll() is None
    # Only the admitted messages were relayed.
    assert metric(g, "websocket_messages_total", 'direction="inbound"') == burst + 1


def test_dropped_messages_are_counted(make_gateway, echo_backend):
    """--help: "drop the message and count it": wsgate_messages_dropped_total."""
    burst = 3
    g = drop_gateway(make_gateway, echo_backend, 1, burst)
    assert metric(g, "wsgate_messages_dropped_total") == 0

    async def body():
        async with websockets.connect(g.ws_url(), ping_interval=None) as ws:
            await send_burst_and_excess(ws, burst)
            assert [await asyncio.wait_for(ws.recv(), 3) for _ in range(burst)] == \
                [f"m{i}" for i in range(burst)]

    run(body())
    # Five single-frame messages and one fragmented one.
    wait_for(lambda: metric(g, "wsgate_messages_dropped_total") == 6, 3,
             what="the dropped messages to be counted")
    assert metric(g, "websocket_messages_total", 'direction="inbound"') == burst
