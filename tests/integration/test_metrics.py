"""GET /metrics: the Prometheus text format (0.0.4), parsed with
prometheus_client, whose values must match a traffic pattern the test made
itself: seed 001's websocket_* names, the wsgate_* gateway totals and the
per-backend families, for configured and for registered backends. Labels
name backends and services, never clients."""

import asyncio
import json
import time

import pytest
import requests
import websockets
from prometheus_client.parser import text_string_to_metric_families

from fleet import FAST, Fleet
from harness import free_port, run, wait_for
from rawws import OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawClient

ORIGIN = "https://app.example.com"

# Seed 001's names and what they are (websocket_connections_total is, as
# there, the number of connections open now: a gauge despite its suffix).
SEED_001 = {
    "websocket_connections_total": "gauge",
    "websocket_messages_total": "counter",
    "websocket_message_latency_seconds": "histogram",
    "websocket_connection_duration_seconds": "histogram",
    "websocket_errors_total": "counter",
}

GATEWAY_FAMILIES = {
    "wsgate_connections_active": "gauge",
    "wsgate_connections_opened_total": "counter",
    "wsgate_connections_closed_total": "counter",
    "wsgate_handshakes_rejected_total": "counter",
    "wsgate_migrations_total": "counter",
    "wsgate_bytes_total": "counter",
    "wsgate_sticky_sessions": "gauge",
    "wsgate_backend_up": "gauge",
    "wsgate_backend_connections": "gauge",
    "wsgate_backend_sessions": "gauge",
    "wsgate_backend_handshakes_total": "counter",
    "wsgate_backend_bytes_total": "counter",
    "wsgate_backend_migrations_total": "counter",
    "wsgate_backend_heartbeat_age_seconds": "gauge",
    "wsgate_backend_latency_seconds": "gauge",
    "wsgate_backend_backpressure_pauses_total": "counter",
}

# Every label a sample may carry. A client id, a peer address or a path
# would make the series unbounded.
ALLOWED_LABELS = {"direction", "type", "from", "backend", "service", "result", "le", "code"}


class Scrape:
    """One /metrics answer: declared types from the # TYPE lines, samples
    from prometheus_client's parser (which fails on malformed text)."""

    def __init__(self, text):
        self.text = text
        self.types = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split()
                assert name not in self.types, f"{name} declared twice"
                self.types[name] = typ
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def all(self, name, **labels):
        return [s for s in self.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name, **labels):
        found = self.all(name, **labels)
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples: {found}"
        return found[0].value

    def total(self, name, **labels):
        return sum(s.value for s in self.all(name, **labels))

    def by_backend(self, name, **labels):
        return {s.labels["backend"]: s.value for s in self.all(name, **labels)}

    def histogram(self, name):
        """(cumulative buckets [(le, count)], count, sum), checked for shape."""
        buckets = [(float(s.labels["le"]), s.value) for s in self.all(name + "_bucket")]
        assert buckets, f"{name}: no buckets"
        les = [le for le, _ in buckets]
        assert les == sorted(les) and les[-1] == float("inf"), f"{name}: bounds {les}"
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"{name}: buckets not cumulative: {buckets}"
        count, total = self.value(name + "_count"), self.value(name + "_sum")
        assert counts[-1] == count, f"{name}: +Inf bucket {counts[-1]} != count {count}"
        assert total >= 0
        return buckets, count, total


def scrape(g, port=None):
    url = f"http://127.0.0.1:{port}/metrics" if port else g.http_url("/metrics")
    r = requests.get(url, timeout=3)
    assert r.status_code == 200, r.text
    ctype = r.headers["Content-Type"]
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    return Scrape(r.text)


def wait_metric(g, name, want, timeout=5.0, **labels):
    """Polls /metrics until the sample equals want; returns that scrape."""
    last = []

    def check():
        s = scrape(g)
        last[:] = [s.value(name, **labels)]
        return s if last[0] == want else None

    try:
        return wait_for(check, timeout, interval=0.05, what=f"{name}{labels} == {want}")
    except TimeoutError:
        raise AssertionError(f"{name}{labels} stayed {last} (want {want})") from None


def bearer(g):
    return {"Authorization": f"Bearer {g.key}"}


# ---- configured backends ---------------------------------------------------


@pytest.mark.timeout(60)
def test_values_match_a_known_traffic_pattern(make_gateway, make_backend):
    """3 clients x 10 echoed messages, one client closed, one upgrade
    refused with 403: every figure is known exactly."""
    b1, b2 = make_backend("echo"), make_backend("echo")
    g = make_gateway([b1, b2], args=["--threads", "2", "--allowed-origins", ORIGIN])
    ids = ["client-metrics-aa", "client-metrics-bb", "client-metrics-cc"]
    sent = 0

    async def body():
        nonlocal sent
        clients = [await websockets.connect(g.ws_url(f"/room?clientId={i}"), origin=ORIGIN,
                                            ping_interval=None) for i in ids]
        for c in clients:
            for n in range(10):
                msg = f"message {n:02d}"
                await c.send(msg)
                assert await c.recv() == msg
                sent += len(msg)
        with pytest.raises(websockets.InvalidStatusCode) as refused:
            await websockets.connect(g.ws_url("/room?clientId=client-metrics-evil"),
                                     origin="https://evil.example")
        assert refused.value.status_code == 403
        await clients[0].close()
        # Both ends of the closed session are done: its backend saw the close.
        wait_for(lambda: len(b1.events("close")) + len(b2.events("close")) == 1, 5,
                 what="the backend to see the close")
        s = wait_metric(g, "wsgate_connections_closed_total", 1)
        check(s)
        for c in clients[1:]:
            await c.close()

    def check(s):
        for name, typ in {**SEED_001, **GATEWAY_FAMILIES}.items():
            assert s.types.get(name) == typ, f"{name}: declared {s.types.get(name)}, want {typ}"

        # Seed 001's names.
        assert s.value("websocket_connections_total") == 2
        assert s.value("websocket_messages_total", direction="inbound") == 30
        assert s.value("websocket_messages_total", direction="outbound") == 30
        _, count, total = s.histogram("websocket_connection_duration_seconds")
        assert count == 1
        assert 0 < total < time.monotonic() - started
        _, count, _ = s.histogram("websocket_message_latency_seconds")
        assert 1 <= count <= 60, count  # a sample of the relayed messages is timed
        assert s.value("websocket_errors_total", type="handshake_rejected") == 1
        assert s.value("websocket_errors_total", type="protocol") == 0

        # The gateway's own totals.
        assert s.value("wsgate_connections_active") == 2
        assert s.value("wsgate_connections_opened_total") == 3
        assert s.value("wsgate_connections_closed_total") == 1
        assert s.value("wsgate_handshakes_rejected_total") == 1
        assert s.value("wsgate_sticky_sessions") == 3
        from_clients = s.value("wsgate_bytes_total", **{"from": "clients"})
        from_backends = s.value("wsgate_bytes_total", **{"from": "backends"})
        # Every payload byte each way, plus at least 6 bytes of client frame
        # head (masked) and 2 of backend frame head per message.
        assert from_clients >= sent + 30 * 6, (from_clients, sent)
        assert from_backends >= sent + 30 * 2, (from_backends, sent)

        # Per backend: the sessions each backend saw, adding up to the totals.
        want = {}
        for b in (b1, b2):
            want[b.addr] = len(b.events("open")) - len(b.events("close"))
        assert sum(want.values()) == 2 and len(b1.events("open")) + len(b2.events("open")) == 3
        assert s.by_backend("wsgate_backend_connections") == want
        assert s.by_backend("wsgate_backend_up") == {b1.addr: 1, b2.addr: 1}
        ok = s.by_backend("wsgate_backend_handshakes_total", result="ok")
        assert ok == {b.addr: len(b.events("open")) for b in (b1, b2)}
        assert s.total("wsgate_backend_handshakes_total", result="failed") == 0
        assert s.total("wsgate_backend_handshakes_total", result="refused") == 0
        assert s.total("wsgate_backend_sessions") == 3
        assert s.total("wsgate_backend_bytes_total", direction="out") == from_clients
        assert s.total("wsgate_backend_bytes_total", direction="in") == from_backends
        assert {x.labels["service"] for x in s.all("wsgate_backend_up")} == {"default"}
        # Configured backends send no heartbeats: no age for them.
        assert s.all("wsgate_backend_heartbeat_age_seconds") == []

    started = time.monotonic()
    run(body())


def test_labels_never_contain_client_ids(make_gateway, make_backend):
    b = make_backend("echo")
    g = make_gateway([b], args=["--rate-limit-upgrades", "0"])
    secret = "client-zq7x3"

    async def body():
        async with websockets.connect(g.ws_url(f"/chat/{secret}-path?clientId={secret}-id"),
                                      extra_headers=[("X-Client-Id", f"{secret}-hdr")]) as ws:
            await ws.send(f"{secret}-msg")
            await ws.recv()
            s = scrape(g)
            assert secret not in s.text
            for sample in s.samples:
                assert set(sample.labels) <= ALLOWED_LABELS, sample
                for v in sample.labels.values():
                    assert secret not in v and "127.0.0.1:" + str(ws.local_address[1]) != v

    run(body())


def test_backend_handshake_results(make_gateway, make_backend):
    """A backend that refuses the upgrade counts as refused (the client gets
    its 403), one that is not there as failed (the client gets a 5xx)."""

    async def status_of(g):
        try:
            ws = await websockets.connect(g.ws_url("/?clientId=hs"))
        except websockets.InvalidStatusCode as e:
            return e.status_code
        await ws.close()
        return 101

    rejecting = make_backend("reject")
    g = make_gateway([rejecting])
    assert run(status_of(g)) == 403
    s = scrape(g)
    assert s.value("wsgate_backend_handshakes_total", result="refused") == 1
    assert s.value("wsgate_backend_handshakes_total", result="failed") == 0
    assert s.value("wsgate_backend_handshakes_total", result="ok") == 0
    assert s.value("wsgate_connections_opened_total") == 0
    assert s.value("wsgate_handshakes_rejected_total") == 1

    gone = f"127.0.0.1:{free_port()}"
    g = make_gateway([gone], args=["--health-check", "off"])
    status = run(status_of(g))
    assert 500 <= status < 600, status
    s = scrape(g)
    assert s.value("wsgate_backend_handshakes_total", result="failed") >= 1
    assert s.value("wsgate_backend_handshakes_total", result="refused") == 0
    assert s.value("wsgate_backend_handshakes_total", result="ok") == 0
    assert s.value("wsgate_connections_opened_total") == 0
    assert s.value("websocket_errors_total", type="handshake_failed") == 1
    assert s.value("wsgate_handshakes_failed_total") == 1


def test_protocol_error_is_counted(gateway):
    c = RawClient(gateway.ws_port)
    try:
        c.handshake("/?clientId=raw")
        c.send_frame(OP_TEXT, b"unmasked", mask=False)  # clients must mask
        f = c.expect_close()
        assert f is not None and f.opcode == OP_CLOSE and f.close_code == 1002, f
    finally:
        c.close()
    s = wait_metric(gateway, "wsgate_connections_closed_total", 1)
    assert s.value("websocket_errors_total", type="protocol") == 1
    assert s.value("wsgate_protocol_errors_total") == 1
    _, count, _ = s.histogram("websocket_connection_duration_seconds")
    assert count == 1


def test_messages_are_counted_not_frames(gateway):
    """A message in three fragments is one message; pings are none."""
    c = RawClient(gateway.ws_port)
    try:
        c.handshake("/?clientId=frag")
        c.send_frame(OP_TEXT, b"ab", fin=False)
        c.send_frame(OP_CONT, b"cd", fin=False)
        c.send_frame(OP_CONT, b"ef")
        assert c.recv_message() == (OP_TEXT, b"abcdef")
        c.send_frame(OP_PING, b"p")
        assert c.recv_frame().opcode == OP_PONG
        c.send_frame(OP_TEXT, b"emitfrag A B C")  # the backend answers in three fragments
        assert c.recv_message() == (OP_TEXT, b"ABC")
        s = scrape(gateway)
        assert s.value("websocket_messages_total", direction="inbound") == 2
        assert s.value("websocket_messages_total", direction="outbound") == 2
    finally:
        c.close()


def test_connection_duration_lands_in_its_bucket(gateway):
    async def body():
        async with websockets.connect(gateway.ws_url("/?clientId=dur")) as ws:
            await ws.send("x")
            await ws.recv()
            await asyncio.sleep(1.3)

    started = time.monotonic()
    run(body())
    s = wait_metric(gateway, "wsgate_connections_closed_total", 1)
    buckets, count, total = s.histogram("websocket_connection_duration_seconds")
    assert count == 1
    assert 1.3 <= total <= time.monotonic() - started, total
    for le, n in buckets:
        assert n == (1 if le >= 5 else 0 if le <= 1 else n), buckets
    assert dict(buckets)[5.0] == 1 and dict(buckets)[1.0] == 0, buckets


def test_metrics_need_no_key_and_have_help_and_type(gateway):
    r = requests.get(gateway.http_url("/metrics"), timeout=3)  # no cookie, no bearer
    assert r.status_code == 200
    s = Scrape(r.text)
    helps = {line.split()[2] for line in r.text.splitlines() if line.startswith("# HELP ")}
    assert set(s.types) == helps
    for name in s.types:
        assert name.startswith(("websocket_", "wsgate_")), name
    for sample in s.samples:
        assert any(sample.name == n or sample.name.startswith(n + "_") for n in s.types), sample
        assert sample.value == sample.value and sample.value >= 0, sample  # no NaN, no negatives


# ---- registered backends ---------------------------------------------------


@pytest.fixture
def seeds(tmp_path):
    with Fleet(tmp_path) as fleet:
        yield fleet


@pytest.mark.timeout(60)
def test_registered_backends_heartbeats_and_a_migration(make_gateway, seeds):
    """Heartbeat ages stay under the timeout; a SIGKILLed backend's sessions
    move: wsgate_migrations_total and the survivor's migrations in count
    them, the clients stay connected, the dead backend leaves the series."""
    g = make_gateway(args=["--threads", "2", *FAST])
    seeds(g, "alpha")
    beta = seeds(g, "beta")

    async def body():
        clients = [await websockets.connect(g.ws_url(f"/?clientId=reg{i}"), ping_interval=None)
                   for i in range(4)]
        where = []
        for c in clients:
            await c.send("whoami")
            where.append(json.loads(await c.recv())["server"])
        on_beta = where.count("beta")
        assert 0 < on_beta < 4, where

        s = scrape(g)
        assert s.by_backend("wsgate_backend_up") == {"alpha": 1, "beta": 1}
        assert s.by_backend("wsgate_backend_connections") == {"alpha": 4 - on_beta,
                                                              "beta": on_beta}
        ages = s.by_backend("wsgate_backend_heartbeat_age_seconds")
        assert set(ages) == {"alpha", "beta"}
        assert all(0 <= a < 1.0 for a in ages.values()), ages  # --server-timeout 1000
        lat = s.by_backend("wsgate_backend_latency_seconds")
        assert all(0 < v < 1 for v in lat.values()), lat
        assert s.value("wsgate_migrations_total") == 0

        beta.kill()
        s = wait_metric(g, "wsgate_migrations_total", on_beta, timeout=8)
        for c in clients:
            await c.send("whoami")
            assert json.loads(await asyncio.wait_for(c.recv(), 5))["server"] == "alpha"
        # The dead backend leaves the registry after --server-timeout.
        s = wait_for(lambda: (lambda x: x if "beta" not in x.by_backend("wsgate_backend_up")
                              else None)(scrape(g)), 5, what="beta to leave /metrics")
        assert s.value("wsgate_migrations_total") == on_beta
        moved = s.by_backend("wsgate_backend_migrations_total", direction="in")
        assert moved == {"alpha": on_beta}, moved
        assert s.by_backend("wsgate_backend_migrations_total", direction="out") == {"alpha": 0}
        assert s.value("wsgate_backend_connections", backend="alpha") == 4
        assert s.value("websocket_connections_total") == 4
        assert s.value("wsgate_connections_opened_total") == 4
        assert s.value("wsgate_connections_closed_total") == 0
        for c in clients:
            await c.close()

    run(body(), 40)


def test_draining_shows_in_backend_up_and_gateway_gauge(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "alpha"), seeds(g, "beta")
    r = requests.post(g.http_url("/drain"), json={"serverId": "beta"}, headers=bearer(g), timeout=3)
    assert r.status_code == 200, r.text
    s = scrape(g)
    assert s.by_backend("wsgate_backend_up") == {"alpha": 1, "beta": 0}
    assert s.value("wsgate_draining") == 0
    r = requests.post(g.http_url("/drain"), json={}, headers=bearer(g), timeout=3)
    assert r.status_code == 200, r.text
    assert scrape(g).value("wsgate_draining") == 1
    r = requests.post(g.http_url("/undrain"), json={}, headers=bearer(g), timeout=3)
    assert r.status_code == 200, r.text
    assert scrape(g).value("wsgate_draining") == 0


# ---- ADMIN_BIND ------------------------------------------------------------


def test_admin_bind_moves_metrics_off_the_http_port(make_gateway, echo_backend):
    admin_port = free_port()
    g = make_gateway([echo_backend], args=["--admin-bind", f"127.0.0.1:{admin_port}"])

    async def body():
        async with websockets.connect(g.ws_url("/?clientId=adm")) as ws:
            await ws.send("x")
            await ws.recv()
            assert scrape(g, port=admin_port).value("wsgate_connections_active") == 1

    run(body())
    assert requests.get(g.http_url("/metrics"), timeout=3).status_code == 404
