"""TLS with OpenSSL 3: wss:// and https:// on the listeners (all at once
with --websrv-usessl, or one by one with --ws-tls, --http-tls, --admin-tls),
TLS 1.2 and 1.3 only, ALPN http/1.1, certificates chosen by SNI, SIGHUP
reloads that leave open sessions alone and keep the old certificates when
the new files are bad, wss:// backends checked against --backend-ca, and
the start-up errors of a TLS configuration without usable files."""

import asyncio
import json
import signal
import socket
import ssl
import subprocess
import time
import warnings

import pytest
import requests
import websockets

from certs import CertFactory, san_dns, serial_of, subject_cn
from harness import WSGATE_BIN, clean_env, free_port, run, wait_for
from rawws import RawClient
from tlsgw import TlsBackend, TlsGateway, handshake

TLS_ON = ["--websrv-usessl", "true"]


@pytest.fixture
def pki(tmp_path):
    return CertFactory(tmp_path / "pki")


@pytest.fixture
def server_cert(pki):
    """The default certificate: good for 127.0.0.1, localhost and gw.test."""
    return pki.issue("server", "gw.test", dns=["localhost", "gw.test"], ips=["127.0.0.1"])


@pytest.fixture
def make_tls_gateway(tmp_path, pki):
    """Like make_gateway, for gateways with TLS listeners (readiness and
    requests over https, trusting the test CA)."""
    started = []

    def make(backends=(), args=(), ws_tls=True, http_tls=True, start=True, **kw):
        g = TlsGateway(tmp_path, backends, args, ca=pki.ca.cert, ws_tls=ws_tls,
                       http_tls=http_tls, name=f"tgw{len(started) + 1}", **kw)
        started.append(g)
        return g.start() if start else g

    yield make
    problems = []
    for g in started:
        problems += g.teardown()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def cert_args(pair):
    return ["--tls-cert", pair.cert, "--tls-key", pair.key]


async def echo_once(url, ctx, text, **kw):
    async with websockets.connect(url, ssl=ctx, open_timeout=5, **kw) as ws:
        await ws.send(text)
        return await ws.recv()


def upgrade_answer(port, **kw):
    """The answer a plain-socket upgrade gets (for the 502s)."""
    c = RawClient(port, timeout=10)
    try:
        return c.handshake(expect=None, timeout=10, **kw)
    finally:
        c.close()


# ---- TLS on the listeners ----------------------------------------------


def test_wss_echo_and_https_health(make_tls_gateway, echo_backend, server_cert):
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert))

    async def body():
        ctx = g.client_ssl(check_hostname=True)
        async with websockets.connect(g.ws_url("/tls?x=1"), ssl=ctx) as ws:
            for text in ("over tls", "x" * 100_000):
                await ws.send(text)
                assert await ws.recv() == text
            await ws.send(b"\x00\xffbinary")
            assert await ws.recv() == b"\x00\xffbinary"
            await ws.send("whoami")
            seen = json.loads(await ws.recv())
        assert seen["path"] == "/tls?x=1"
        # The backend is told the client came over TLS.
        assert seen["headers"]["X-Forwarded-Proto"] == "https"

    run(body())
    r = g.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    # Not verified against the test CA: refused by the client.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(g.http_url("/healthz"), timeout=2)
    # Plain HTTP and plain WebSocket on TLS ports get no answer in clear.
    for port in (g.ws_port, g.http_port):
        c = RawClient(port, timeout=3)
        try:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = c.read_until_eof(timeout=3)
            assert not data.startswith(b"HTTP/1.1 200"), data
        except TimeoutError:
            pass
        finally:
            c.close()
    assert g.get("/healthz").status_code == 200


@pytest.mark.parametrize("args,ws_tls,http_tls", [
    (["--ws-tls", "true"], True, False),
    (["--http-tls", "true"], False, True),
    (TLS_ON + ["--ws-tls", "false"], False, True),
    (TLS_ON + ["--http-tls", "false"], True, False),
], ids=["ws-only", "http-only", "usessl-but-ws-plain", "usessl-but-http-plain"])
def test_tls_per_listener(make_tls_gateway, echo_backend, server_cert, args, ws_tls, http_tls):
    g = make_tls_gateway([echo_backend], args + cert_args(server_cert), ws_tls=ws_tls,
                         http_tls=http_tls)
    ctx = g.client_ssl(check_hostname=True) if ws_tls else None
    assert run(echo_once(g.ws_url(), ctx, "hello")) == "hello"
    assert g.get("/healthz").status_code == 200
    # The other scheme fails on each port.
    if ws_tls:
        with pytest.raises((websockets.InvalidHandshake, websockets.ConnectionClosed, OSError,
                            EOFError, asyncio.TimeoutError)):
            run(echo_once(f"ws://127.0.0.1:{g.ws_port}/", None, "plain"), timeout=5)
    else:
        with pytest.raises((ssl.SSLError, OSError)):
            handshake(g.ws_port, g.ca, timeout=3)
    if http_tls:
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{g.http_port}/healthz", timeout=2)
    else:
        with pytest.raises((ssl.SSLError, OSError)):
            handshake(g.http_port, g.ca, timeout=3)


def test_admin_listener_tls(make_tls_gateway, echo_backend, server_cert):
    """--admin-tls true: the admin listener speaks TLS while WEBSRV_PORT
    and WS_PORT stay plain."""
    admin = free_port()
    g = make_tls_gateway([echo_backend], ["--admin-bind", f"127.0.0.1:{admin}", "--admin-tls",
                                          "true"] + cert_args(server_cert),
                         ws_tls=False, http_tls=False)
    r = requests.get(f"https://127.0.0.1:{admin}/metrics", timeout=3, verify=g.ca)
    assert r.status_code == 200, r.text
    assert "websocket_connections_total" in r.text
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{admin}/metrics", timeout=2)
    assert g.get("/healthz").status_code == 200
    assert run(echo_once(g.ws_url(), None, "plain")) == "plain"


# ---- refusals at accept on a TLS port -------------------------------------


def client_hello(server_name="gw.test"):
    """The first flight of a TLS client, as bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def first_answer(port, data, timeout=5.0):
    """What the gateway sends back to `data` until it closes."""
    c = RawClient(port, timeout=timeout)
    try:
        c.send(data)
        return c.read_until_eof(timeout=timeout)
    except TimeoutError:
        return bytes(c.buf)
    finally:
        c.close()


@pytest.mark.parametrize("limit", ["--max-connections", "--max-pending-handshakes"])
def test_refusal_at_accept_is_not_cleartext_on_a_tls_port(make_tls_gateway, echo_backend,
                                                          server_cert, limit):
    """A client over the limit is refused before its upgrade. On a TLS
    port the refusal must not be cleartext HTTP written into the TLS
    stream (a TLS client reads it as a protocol error, "wrong version
    number", and never sees the 503): either a 503 inside TLS or a
    plain close."""
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert) + [limit, 1])
    holder = RawClient(g.ws_port)  # the one allowed: silent, so pending too
    try:
        wait_for(lambda: g.connections() == 1, 5, what="the first connection")
        answer = first_answer(g.ws_port, client_hello())
        assert not answer.startswith(b"HTTP/"), answer[:120]

        async def library_client():
            try:
                async with websockets.connect(g.ws_url(), ssl=g.client_ssl(), open_timeout=5):
                    return "upgraded"
            except websockets.InvalidStatusCode as e:
                return e.status_code
            except (ssl.SSLError, OSError, EOFError, websockets.InvalidHandshake,
                    websockets.ConnectionClosed) as e:
                return repr(e)

        seen = run(library_client())
        assert seen != "upgraded"
        assert "WRONG_VERSION_NUMBER" not in str(seen), seen
    finally:
        holder.close()


# ---- TLS handshakes that never finish ---------------------------------------


@pytest.mark.parametrize("port_name", ["ws_port", "http_port"])
@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],
                         ids=["silent", "partial-client-hello"])
def test_unfinished_tls_handshake_dropped_at_handshake_timeout(make_tls_gateway, echo_backend,
                                                               server_cert, port_name, sent):
    """A TLS slowloris: the connection ends at --handshake-timeout, as a
    plain one does, not at the timeout plus --close-timeout (nothing can
    be written to a client whose handshake never finished)."""
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert) +
                         ["--handshake-timeout", "1s", "--close-timeout", "5s"])
    c = RawClient(getattr(g, port_name), timeout=10)
    try:
        t0 = time.monotonic()
        if sent:
            c.send(sent)
        assert c.wait_eof(8), "never closed"
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert 0.9 <= elapsed <= 2.0, elapsed
    wait_for(lambda: g.connections() == 0, 5, what="the connection to be released")


def test_partial_request_over_tls_gets_408(make_tls_gateway, echo_backend, server_cert):
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert) +
                         ["--handshake-timeout", "1s"])
    ctx = g.client_ssl()
    with socket.create_connection(("127.0.0.1", g.ws_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="gw.test") as s:
            t0 = time.monotonic()
            s.sendall(b"GET / HTTP/1.1\r\nHost: gw.test\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert 0.9 <= elapsed <= 2.0, elapsed


# ---- protocol versions and ALPN ------------------------------------------


@pytest.mark.parametrize("port_name", ["ws_port", "http_port"])
def test_tls_1_2_and_1_3_only(make_tls_gateway, echo_backend, server_cert, port_name):
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert))
    port = getattr(g, port_name)
    v13 = handshake(port, g.ca, minimum=ssl.TLSVersion.TLSv1_3)
    assert v13.version == "TLSv1.3", v13
    v12 = handshake(port, g.ca, maximum=ssl.TLSVersion.TLSv1_2)
    assert v12.version == "TLSv1.2", v12
    # A client that offers TLS 1.1 at most: the server refuses with a
    # protocol_version alert (the client does offer it: security level 0).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError) as e:
            with ctx.wrap_socket(raw, server_hostname="gw.test") as s:
                pytest.fail(f"TLS 1.1 handshake accepted: {s.version()}")
    assert e.value.reason in ("TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"), e.value
    # The gateway is unaffected.
    assert handshake(port, g.ca).version == "TLSv1.3"


@pytest.mark.parametrize("port_name", ["ws_port", "http_port"])
def test_alpn_selects_http_1_1(make_tls_gateway, echo_backend, server_cert, port_name):
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert))
    port = getattr(g, port_name)
    assert handshake(port, g.ca, alpn=["h2", "http/1.1"]).alpn == "http/1.1"
    assert handshake(port, g.ca, alpn=["http/1.1"]).alpn == "http/1.1"
    # Nothing the gateway speaks: no protocol chosen, the handshake goes on.
    assert handshake(port, g.ca, alpn=["h2"]).alpn is None
    assert handshake(port, g.ca).alpn is None


def test_wss_client_offering_alpn_echoes(make_tls_gateway, echo_backend, server_cert):
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert))
    ctx = g.client_ssl(check_hostname=True, alpn=["h2", "http/1.1"])
    assert run(echo_once(g.ws_url(), ctx, "alpn")) == "alpn"


# ---- SNI ------------------------------------------------------------------


@pytest.fixture
def sni_certs(pki):
    b = pki.issue("b", "b.example", dns=["b.example", "*.b.example"])
    c = pki.issue("c", "c.example", dns=["c.example"])
    return b, c


@pytest.mark.parametrize("port_name", ["ws_port", "http_port"])
def test_sni_chooses_the_certificate(make_tls_gateway, echo_backend, server_cert, sni_certs,
                                     port_name):
    b, c = sni_certs
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert) +
                         ["--tls-sni-certs", f"{b.spec},{c.spec}"])
    port = getattr(g, port_name)
    expect = {
        "b.example": b, "www.b.example": b, "B.EXAMPLE": b, "c.example": c,
        "gw.test": server_cert, "unknown.example": server_cert, "localhost": server_cert,
        None: server_cert,
    }
    for name, pair in expect.items():
        shown = handshake(port, g.ca, server_name=name)
        assert subject_cn(shown.cert) == pair.cn, (name, shown)
        assert serial_of(shown.cert) == pair.serial, (name, shown)
        assert san_dns(shown.cert) == sorted(d for d in pair.names if not d[0].isdigit()), \
            (name, shown)


def test_sni_wss_with_hostname_check(make_tls_gateway, echo_backend, server_cert, sni_certs):
    """A client that checks names connects to 127.0.0.1 asking for
    c.example and gets a certificate valid for it."""
    b, c = sni_certs
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert) +
                         ["--tls-sni-certs", f"{b.spec},{c.spec}"])
    ctx = g.client_ssl(check_hostname=True)
    for name in ("c.example", "x.b.example", "gw.test"):
        assert run(echo_once(g.ws_url(), ctx, name, server_hostname=name)) == name
    r = requests.get(g.http_url("/healthz"), verify=g.ca, timeout=3)
    assert r.status_code == 200


# ---- SIGHUP reloads ---------------------------------------------------------


def test_sighup_reloads_certificates(make_tls_gateway, echo_backend, pki, server_cert, sni_certs):
    b, c = sni_certs
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert) +
                         ["--tls-sni-certs", f"{b.spec},{c.spec}"])
    assert serial_of(handshake(g.ws_port, g.ca).cert) == server_cert.serial

    async def body():
        ctx = g.client_ssl(check_hostname=True)
        async with websockets.connect(g.ws_url("/old"), ssl=ctx, ping_interval=None) as old:
            await old.send("before")
            assert await old.recv() == "before"
            # New files at the same paths: new serials and subjects.
            renewed = pki.issue("server", "gw-renewed.test", dns=["localhost", "gw-renewed.test"],
                                ips=["127.0.0.1"])
            b2 = pki.issue("b", "b-renewed.example", dns=["b.example"])
            assert renewed.cert == server_cert.cert and renewed.serial != server_cert.serial
            g.proc.send_signal(signal.SIGHUP)
            g.wait_log(r"certificates reloaded")
            for port in (g.ws_port, g.http_port):
                shown = handshake(port, g.ca)
                assert (subject_cn(shown.cert), serial_of(shown.cert)) == \
                    ("gw-renewed.test", renewed.serial), shown
                shown = handshake(port, g.ca, server_name="b.example")
                assert (subject_cn(shown.cert), serial_of(shown.cert)) == \
                    ("b-renewed.example", b2.serial), shown
                # c.pem did not change: the same certificate.
                assert serial_of(handshake(port, g.ca, server_name="c.example").cert) == c.serial
            # The session opened before the reload goes on.
            for i in range(20):
                await old.send(f"after {i}")
                assert await old.recv() == f"after {i}"
            # New sessions work with the new certificate.
            assert await echo_once(g.ws_url("/new"), ctx, "new") == "new"
            wait_for(lambda: g.connections() == 1, 5, what="only the old session left")

    run(body())
    assert g.proc.poll() is None
    assert g.get("/healthz").status_code == 200


def _garbage_cert(pki, server_cert, sni):
    server_cert.cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64 !!\n"
                                "-----END CERTIFICATE-----\n")


def _mismatched_key(pki, server_cert, sni):
    other = pki.issue("other", "other.test", dns=["other.test"])
    server_cert.key.write_bytes(other.key.read_bytes())


def _missing_cert(pki, server_cert, sni):
    server_cert.cert.unlink()


def _truncated_sni_cert(pki, server_cert, sni):
    b, _ = sni
    b.cert.write_bytes(b.cert.read_bytes()[:100])


@pytest.mark.parametrize("breakage", [_garbage_cert, _mismatched_key, _missing_cert,
                                      _truncated_sni_cert],
                         ids=["garbage-cert", "mismatched-key", "missing-cert", "broken-sni-cert"])
def test_sighup_with_broken_files_keeps_old_certificates(make_tls_gateway, echo_backend, pki,
                                                         server_cert, sni_certs, breakage):
    b, c = sni_certs
    g = make_tls_gateway([echo_backend], TLS_ON + cert_args(server_cert) +
                         ["--tls-sni-certs", f"{b.spec},{c.spec}"])

    async def body():
        ctx = g.client_ssl(check_hostname=True)
        async with websockets.connect(g.ws_url(), ssl=ctx, ping_interval=None) as old:
            await old.send("before")
            assert await old.recv() == "before"
            breakage(pki, server_cert, sni_certs)
            g.proc.send_signal(signal.SIGHUP)
            g.wait_log(r"certificate reload failed")
            assert not [line for line in g.log_lines() if "certificates reloaded" in line]
            for port in (g.ws_port, g.http_port):
                assert serial_of(handshake(port, g.ca).cert) == server_cert.serial
                assert serial_of(handshake(port, g.ca, server_name="b.example").cert) == b.serial
            await old.send("after")
            assert await old.recv() == "after"
            assert await echo_once(g.ws_url(), ctx, "new") == "new"

    run(body())
    assert g.proc.poll() is None

    # Good files again: the next SIGHUP takes them.
    fixed = pki.issue("server", "gw-fixed.test", dns=["localhost"], ips=["127.0.0.1"])
    pki.issue("b", "b.example", dns=["b.example"], serial=b.serial)
    g.proc.send_signal(signal.SIGHUP)
    g.wait_log(r"certificates reloaded")
    assert serial_of(handshake(g.ws_port, g.ca).cert) == fixed.serial


def test_sighup_without_tls_is_harmless(make_gateway, echo_backend):
    g = make_gateway([echo_backend])
    g.proc.send_signal(signal.SIGHUP)
    g.wait_log(r"no TLS certificates to reload")
    assert g.proc.poll() is None
    assert run(echo_once(g.ws_url(), None, "still")) == "still"


# ---- wss:// backends --------------------------------------------------------


@pytest.fixture
def tls_backend(tmp_path, pki):
    started = []

    def make(pair, mode="echo", name=None):
        b = TlsBackend(tmp_path, mode, name or f"tls{len(started) + 1}", pair.cert, pair.key)
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


def test_wss_backend_with_backend_ca(make_gateway, tls_backend, pki):
    b = tls_backend(pki.issue("backend", "localhost", dns=["localhost"]))
    g = make_gateway([f"wss://localhost:{b.port}"], ["--backend-ca", pki.ca.cert])

    async def body():
        async with websockets.connect(g.ws_url("/via-tls")) as ws:
            for text in ("to a wss backend", "y" * 70_000):
                await ws.send(text)
                assert await ws.recv() == text
            await ws.send("whoami")
            return json.loads(await ws.recv())

    seen = run(body())
    assert seen["path"] == "/via-tls"
    assert b.wait_event("open")[0]["path"] == "/via-tls"


def test_wss_backend_with_unknown_ca_gets_502(make_gateway, tls_backend, pki):
    b = tls_backend(pki.issue("backend", "localhost", dns=["localhost"]))
    g = make_gateway([f"wss://localhost:{b.port}"], ["--backend-ca", pki.other_ca()])
    ans = upgrade_answer(g.ws_port)
    assert ans.status == 502, ans
    assert isinstance(json.loads(ans.body)["error"], str)
    assert b.events("open") == []


def test_wss_backend_with_wrong_name_gets_502(make_gateway, tls_backend, pki):
    """The chain is good but the certificate is for another host."""
    b = tls_backend(pki.issue("backend", "elsewhere.example", dns=["elsewhere.example"]))
    g = make_gateway([f"wss://localhost:{b.port}"], ["--backend-ca", pki.ca.cert])
    assert upgrade_answer(g.ws_port).status == 502
    assert b.events("open") == []


def test_wss_backend_without_verification(make_gateway, tls_backend, pki):
    b = tls_backend(pki.issue("backend", "elsewhere.example", dns=["elsewhere.example"]))
    g = make_gateway([f"wss://localhost:{b.port}"],
                     ["--backend-ca", pki.other_ca(), "--backend-tls-verify", "false"])
    assert run(echo_once(g.ws_url(), None, "unverified")) == "unverified"
    b.wait_event("open")


def test_wss_client_to_wss_backend(make_tls_gateway, tls_backend, pki, server_cert):
    """TLS on both legs at once."""
    b = tls_backend(pki.issue("backend", "localhost", dns=["localhost"]))
    g = make_tls_gateway([f"wss://localhost:{b.port}"], TLS_ON + cert_args(server_cert) +
                         ["--backend-ca", pki.ca.cert])
    ctx = g.client_ssl(check_hostname=True)
    assert run(echo_once(g.ws_url(), ctx, "both legs")) == "both legs"


# ---- configuration errors ---------------------------------------------------


def wsgate(args, env=None, timeout=5):
    """Runs wsgate to completion (these runs must stop on their own)."""
    cmd = [WSGATE_BIN, "--bind", "127.0.0.1", "--ws-port", free_port(), "--websrv-port",
           free_port(), "--gateway-auth-key", "test-key-0123456789abcdef", *args]
    return subprocess.run(list(map(str, cmd)), env=clean_env(env), capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args,env", [
    (["--websrv-usessl", "true"], None),
    (["--ws-tls", "true"], None),
    (["--http-tls", "true"], None),
    (["--admin-bind", "127.0.0.1:1", "--admin-tls", "true"], None),
    ([], {"WEBSRV_USESSL": "true"}),
], ids=["usessl", "ws-tls", "http-tls", "admin-tls", "env"])
def test_tls_without_certificate_exits_2(args, env):
    r = wsgate(args, env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "TLS_CERT" in r.stderr, r.stderr


def test_tls_without_key_exits_2(server_cert):
    r = wsgate(TLS_ON + ["--tls-cert", server_cert.cert])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "TLS_KEY" in r.stderr, r.stderr


def test_missing_cert_file_exits_2(tmp_path, server_cert):
    missing = tmp_path / "nowhere" / "cert.pem"
    r = wsgate(TLS_ON + ["--tls-cert", missing, "--tls-key", server_cert.key])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert str(missing) in r.stderr and "TLS_CERT" in r.stderr, r.stderr


def test_unparsable_cert_file_exits_2(tmp_path, server_cert):
    bad = tmp_path / "bad.pem"
    bad.write_text("this is not a certificate\n")
    r = wsgate(TLS_ON + ["--tls-cert", bad, "--tls-key", server_cert.key])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert str(bad) in r.stderr and "TLS_CERT" in r.stderr, r.stderr


def test_key_not_matching_cert_exits_2(pki, server_cert):
    other = pki.issue("other", "other.test", dns=["other.test"])
    r = wsgate(TLS_ON + ["--tls-cert", server_cert.cert, "--tls-key", other.key])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert str(other.key) in r.stderr and "TLS_KEY" in r.stderr, r.stderr


def test_missing_sni_cert_exits_2(tmp_path, server_cert):
    missing = tmp_path / "nope.pem"
    r = wsgate(TLS_ON + cert_args(server_cert) +
               ["--tls-sni-certs", f"{missing}:{server_cert.key}"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "TLS_SNI_CERTS" in r.stderr, r.stderr


def test_missing_backend_ca_exits_2(tmp_path):
    missing = tmp_path / "ca.pem"
    r = wsgate(["--backend-ca", missing])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert str(missing) in r.stderr and "WSGATE_BACKEND_CA" in r.stderr, r.stderr
