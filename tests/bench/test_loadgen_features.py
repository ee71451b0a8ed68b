"""loadgen's feature abilities against real peers: wss through a TLS endpoint
(wsgate terminating TLS 1.3 in front of echo_server), and permessage-deflate
(the offer, RSV1 frames of stored DEFLATE blocks) against echo_server and
against a scripted server that inflates with zlib.

    ninja -C build && /usr/bin/python3 -m pytest tests/bench/test_loadgen_features.py

About 15 seconds. Every process is started here and stopped by its pid.
"""
import base64
import hashlib
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest

from test_loadgen import ECHO_SERVER, LOADGEN, EchoServer, free_port, loadgen, url

WSGATE = Path(os.environ.get("WSGATE_BUILD", Path(__file__).resolve().parents[2] / "build")) \
    / "wsgate"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

pytestmark = pytest.mark.skipif(
    not (LOADGEN.exists() and ECHO_SERVER.exists()),
    reason="bench tools not built: ninja -C build",
)


def wss(port, path="/"):
    return f"wss://127.0.0.1:{port}{path}"


def accept_of(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


# ---- a raw WebSocket client and server, enough for one exchange ----------------


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode(), rest


def read_exact(sock, n, buf=b""):
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-frame")
        buf += chunk
    return buf[:n], buf[n:]


def read_frame(sock, buf=b""):
    """(fin, rsv, opcode, payload, rest) of the next frame, unmasked."""
    hdr, buf = read_exact(sock, 2, buf)
    fin, rsv, opcode = hdr[0] >> 7, (hdr[0] >> 4) & 7, hdr[0] & 15
    masked, n = hdr[1] >> 7, hdr[1] & 127
    if n == 126:
        ext, buf = read_exact(sock, 2, buf)
        n = struct.unpack(">H", ext)[0]
    elif n == 127:
        ext, buf = read_exact(sock, 8, buf)
        n = struct.unpack(">Q", ext)[0]
    key = b"\0\0\0\0"
    if masked:
        key, buf = read_exact(sock, 4, buf)
    payload, buf = read_exact(sock, n, buf)
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return fin, rsv, opcode, payload, buf


def frame(opcode, payload, rsv=0, mask=True):
    head = bytes([0x80 | rsv << 4 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def upgrade(port, extensions=None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    ext = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    sock.sendall((f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
    head, rest = read_head(sock)
    assert head.startswith("HTTP/1.1 101"), head
    assert accept_of(key) in head
    return sock, head, rest


def raw_deflate(data):
    """RFC 7692 section 7.2.1: compress, sync flush, drop the 00 00 ff ff tail."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def raw_inflate(data):
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


class ScriptedServer:
    """One-connection WebSocket server in a thread: it answers the upgrade
    (accepting permessage-deflate or not), inflates each RSV1 message with
    zlib, records it, and echoes the frame unchanged."""

    def __init__(self, accept_deflate=True):
        self.accept_deflate = accept_deflate
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.offers, self.messages, self.errors = [], [], []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.lsock.settimeout(10)
        try:
            sock, _ = self.lsock.accept()
            sock.settimeout(10)
            head, buf = read_head(sock)
            lines = head.split("\r\n")
            hdrs = {k.strip().lower(): v.strip() for k, _, v in
                    (line.partition(":") for line in lines[1:])}
            self.offers.append(hdrs.get("sec-websocket-extensions"))
            ext = ("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                   "client_no_context_takeover\r\n") if self.accept_deflate else ""
            sock.sendall((f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                          f"{accept_of(hdrs['sec-websocket-key'])}\r\n{ext}\r\n").encode())
            while True:
                fin, rsv, opcode, payload, buf = read_frame(sock, buf)
                if opcode == 8:
                    sock.sendall(frame(8, payload[:2], mask=False))
                    break
                if opcode == 9:
                    sock.sendall(frame(10, payload, mask=False))
                    continue
                self.messages.append((rsv, raw_inflate(payload) if rsv & 4 else payload))
                sock.sendall(frame(opcode, payload, rsv=rsv, mask=False))
        except (OSError, ConnectionError, zlib.error, KeyError) as e:
            self.errors.append(repr(e))
        finally:
            self.lsock.close()

    def join(self):
        self.thread.join(15)
        assert not self.thread.is_alive()


# ---- permessage-deflate -----------------------------------------------------------


def test_echo_server_accepts_deflate_and_echoes_rsv1_frames():
    """echo_server answers the offer with no context takeover both ways and
    returns a really compressed message unchanged, RSV1 and all."""
    message = b"hello deflate " * 100
    with EchoServer() as srv:
        sock, head, rest = upgrade(srv.port, "permessage-deflate; client_max_window_bits")
        assert ("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                "client_no_context_takeover") in head
        compressed = raw_deflate(message)
        sock.sendall(frame(2, compressed, rsv=4))
        fin, rsv, opcode, payload, _ = read_frame(sock, rest)
        assert (fin, rsv, opcode) == (1, 4, 2)
        assert payload == compressed and raw_inflate(payload) == message
        sock.close()


def test_echo_server_refuses_rsv1_without_the_extension():
    with EchoServer() as srv:
        sock, head, rest = upgrade(srv.port)
        assert "Extensions" not in head
        sock.sendall(frame(2, raw_deflate(b"x" * 50), rsv=4))
        fin, rsv, opcode, payload, _ = read_frame(sock, rest)
        assert opcode == 8 and struct.unpack(">H", payload[:2])[0] == 1002
        sock.close()


def test_loadgen_deflate_frames_inflate_with_zlib():
    """What loadgen --deflate sends is a valid raw DEFLATE stream that zlib
    inflates to the plain message, including a message over one stored block."""
    for size in (64, 70000):
        srv = ScriptedServer()
        rc, r, err = loadgen("--url", url(srv.port), "--mode", "echo", "--inflight", 1,
                             "--duration", 0.3, "--payload", size, "--deflate", "--margin", 5)
        srv.join()
        assert rc == 0, err
        assert r["deflate"] is True and r["connected"] == 1 and r["mismatches"] == 0
        assert srv.offers == ["permessage-deflate; client_no_context_takeover; "
                              "server_no_context_takeover"]
        assert srv.messages and not srv.errors, srv.errors
        for rsv, plain in srv.messages:
            assert rsv == 4 and len(plain) == size
        assert struct.unpack("<Q", srv.messages[0][1][:8])[0] == 0  # sequence 0 first


def test_loadgen_deflate_needs_the_server_to_accept():
    srv = ScriptedServer(accept_deflate=False)
    rc, r, err = loadgen("--url", url(srv.port), "--mode", "echo", "--duration", 0.3,
                         "--deflate", "--margin", 5)
    srv.join()
    assert rc == 1
    assert r["connected"] == 0 and r["errors"]["handshake"] == 1
    assert "permessage-deflate offered but not accepted" in err


def test_loadgen_deflate_echo_against_echo_server():
    with EchoServer() as srv:
        rc, r, err = loadgen("--url", url(srv.port, "/?c={i}"), "--connections", 100,
                             "--mode", "echo", "--rate", 2000, "--duration", 1.5,
                             "--payload", 100, "--deflate")
    assert rc == 0, err
    assert r["deflate"] is True and r["connected"] == 100
    assert r["messages_received"] == r["messages_sent"] == 3000
    assert r["mismatches"] == 0 and r["gaps"] == 0 and r["conns_last_echoed"] == 100


# ---- wss ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", d / "key.pem",
                    "-out", d / "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture
def tls_gateway(cert, tmp_path):
    """wsgate with TLS on its WebSocket port, in front of echo_server."""
    if not WSGATE.exists():
        pytest.skip("wsgate not built")
    with EchoServer() as srv:
        port, http = free_port(), free_port()
        env = dict(os.environ, WEBSRV_USESSL="true", TLS_CERT=str(cert[0]),
                   TLS_KEY=str(cert[1]))
        log = open(tmp_path / "wsgate.log", "wb")
        gw = subprocess.Popen([str(WSGATE), "--bind", "127.0.0.1", "--ws-port", str(port),
                               "--websrv-port", str(http), "--threads", "1",
                               "--gateway-auth-key", "bench-test-key-0123456789",
                               "--log-level", "warn", "--backend", f"127.0.0.1:{srv.port}"],
                              env=env, stdout=log, stderr=log)
        try:
            end = time.monotonic() + 10
            while time.monotonic() < end:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert gw.poll() is None, (tmp_path / "wsgate.log").read_text()
                    time.sleep(0.05)
            yield port
        finally:
            gw.terminate()
            try:
                gw.wait(10)
            except subprocess.TimeoutExpired:
                gw.kill()
                gw.wait()
            log.close()


def test_wsgate_endpoint_speaks_tls13(tls_gateway):
    """The endpoint the wss tests use is real TLS 1.3 (Python's ssl agrees)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", tls_gateway), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            assert tls.version() == "TLSv1.3"


def test_wss_connects_and_echoes(tls_gateway):
    rc, r, err = loadgen("--url", wss(tls_gateway, "/?clientId=c{i}"), "--connections", 200,
                         "--mode", "echo", "--rate", 2000, "--duration", 1.5, "--payload", 64)
    assert rc == 0, err
    assert r["tls"] is True and r["connected"] == 200 and r["failed"] == 0
    assert r["messages_received"] == r["messages_sent"] == 3000
    assert r["mismatches"] == 0 and r["conns_last_echoed"] == 200
    assert r["handshake_ms"]["count"] == 200


def test_wss_big_messages_cross_many_records(tls_gateway):
    """Messages over one TLS record (16 KiB) and closed-loop bursts: the
    reader must drain what the TLS session holds, or echoes would stall."""
    rc, r, err = loadgen("--url", wss(tls_gateway), "--connections", 4, "--mode", "echo",
                         "--inflight", 4, "--duration", 1, "--payload", 100000, "--deflate")
    assert rc == 0, err
    assert r["tls"] and r["deflate"] and r["messages_received"] > 20
    assert r["mismatches"] == 0 and r["lost"] == 0


def test_wss_idle_hold_and_handshake_rate(tls_gateway):
    rc, r, err = loadgen("--url", wss(tls_gateway), "--connections", 500, "--mode", "idle",
                         "--duration", 0.5, "--max-pending", 200)
    assert rc == 0, err
    assert r["connected"] == 500 and r["dropped"] == 0 and r["ramp_s"] > 0


def test_wss_to_a_plain_server_fails_within_the_bound():
    """echo_server waits for the end of a request head that a ClientHello
    never has (timeout); a server that answers in plain HTTP fails the TLS
    handshake at once."""
    with EchoServer() as srv:
        t0 = time.monotonic()
        rc, r, err = loadgen("--url", wss(srv.port), "--connections", 3, "--mode", "idle",
                             "--duration", 0.2, "--connect-timeout", 2, "--margin", 5)
        assert time.monotonic() - t0 < 15
    assert rc == 1
    assert r["connected"] == 0 and r["errors"]["timeout"] == 3
    lsock = socket.create_server(("127.0.0.1", 0))

    def answer_plain():
        lsock.settimeout(10)
        try:
            for _ in range(2):
                conn, _ = lsock.accept()
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=answer_plain, daemon=True)
    thread.start()
    rc, r, err = loadgen("--url", wss(lsock.getsockname()[1]), "--connections", 2,
                         "--mode", "idle", "--duration", 0.2, "--connect-timeout", 2,
                         "--margin", 5)
    thread.join(10)
    lsock.close()
    assert rc == 1
    assert r["connected"] == 0 and r["errors"]["handshake"] == 2
    assert "TLS handshake" in err
