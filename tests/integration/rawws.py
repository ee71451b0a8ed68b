"""A hand-driven WebSocket and HTTP client on a plain socket.

The tests use it where a library would refuse to misbehave: malformed
requests, protocol-violating frames, a client that stops reading or never
answers a ping, a connection reset. Everything is bounded by deadlines.
"""

import base64
import hashlib
import os
import socket
import struct
import time
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Closed(Exception):
    """The peer closed the TCP connection (EOF or reset)."""


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None, key=None):
    """Builds one frame. `length` overrides the encoded payload length and
    always uses the 64-bit form when given (for the top-bit test)."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if length is not None:
        head = struct.pack("!BBQ", b0, mbit | 127, length)
    elif n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = key or os.urandom(4)
    masked = bytes(c ^ key[i % 4] for i, c in enumerate(payload)) if n < 4096 else _xor(payload, key)
    return head + key + masked


def _xor(data, key):
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, payload

    @property
    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self):
        return self.payload[2:].decode("utf-8", "replace")

    def __repr__(self):
        return f"Frame(fin={self.fin}, rsv={self.rsv}, op={self.opcode}, len={len(self.payload)})"


def parse_frames(data):
    """Splits server-to-client bytes into frames. Returns (frames, rest):
    rest holds the bytes of an incomplete last frame."""
    frames = []
    i = 0
    while True:
        if len(data) - i < 2:
            break
        b0, b1 = data[i], data[i + 1]
        n = b1 & 0x7F
        j = i + 2
        if n == 126:
            if len(data) - j < 2:
                break
            n = struct.unpack_from("!H", data, j)[0]
            j += 2
        elif n == 127:
            if len(data) - j < 8:
                break
            n = struct.unpack_from("!Q", data, j)[0]
            j += 8
        mkey = None
        if b1 & 0x80:
            if len(data) - j < 4:
                break
            mkey = data[j : j + 4]
            j += 4
        if len(data) - j < n:
            break
        payload = bytes(data[j : j + n])
        if mkey:
            payload = _xor(payload, mkey)
        frames.append(Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload))
        i = j + n
    return frames, bytes(data[i:])


class HttpAnswer:
    def __init__(self, status, reason, headers, body, rest=b""):
        self.status, self.reason, self.headers, self.body, self.rest = status, reason, headers, body, rest

    def header(self, name):
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def __repr__(self):
        return f"HttpAnswer({self.status} {self.reason}, {self.headers}, {self.body!r})"


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        if line:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return status, reason, headers


class RawClient:
    def __init__(self, port, host="127.0.0.1", timeout=5.0, rcvbuf=None, connect=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.port = port
        self.eof = False
        if connect:
            self.sock.connect((host, port))

    # ---- bytes ---------------------------------------------------------

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Reads once into the buffer; False on EOF or reset."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data before the deadline")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("no data before the deadline")
        except ConnectionResetError:
            self.eof = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_until_eof(self, timeout=5.0, limit=512 << 20):
        """Everything until the peer closes; the buffered bytes come first."""
        deadline = time.monotonic() + timeout
        while not self.eof and len(self.buf) < limit:
            self._fill(deadline)
        data = bytes(self.buf)
        self.buf.clear()
        return data

    # ---- HTTP ----------------------------------------------------------

    def read_http(self, timeout=5.0, body=True):
        """Reads one response head and, with body=True, its body (by
        Content-Length, else until EOF)."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise Closed(f"connection closed before a response head: {bytes(self.buf)!r}")
        end = self.buf.index(b"\r\n\r\n") + 4
        status, reason, headers = parse_head(bytes(self.buf[: end - 4]))
        del self.buf[:end]
        ans = HttpAnswer(status, reason, headers, b"")
        if not body or status == 101:
            return ans
        length = ans.header("Content-Length")
        if length is not None:
            n = int(length)
            while len(self.buf) < n:
                if not self._fill(deadline):
                    break
            ans.body = bytes(self.buf[:n])
            del self.buf[:n]
        else:
            ans.body = self.read_until_eof(max(0.1, deadline - time.monotonic()))
        return ans

    def handshake(self, path="/", host=None, headers=(), key=None, expect=101, timeout=5.0,
                  connection="Upgrade"):
        """Sends an upgrade request; asserts the status and, for 101, the
        Sec-WebSocket-Accept. Returns the HttpAnswer."""
        key = key or base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host or f'127.0.0.1:{self.port}'}",
            "Upgrade: websocket",
            f"Connection: {connection}",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in headers]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        ans = self.read_http(timeout=timeout)
        if expect is not None:
            assert ans.status == expect, ans
        if ans.status == 101:
            assert ans.header("Sec-WebSocket-Accept") == accept_for(key), ans
        return ans

    # ---- frames --------------------------------------------------------

    def send_frame(self, opcode, payload=b"", **kw):
        self.send(encode_frame(opcode, payload, **kw))

    def send_close(self, code=1000, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def recv_frame(self, timeout=5.0):
        """The next frame, or None when the connection ended (EOF/reset)."""
        deadline = time.monotonic() + timeout
        while True:
            frames, _ = parse_frames(self.buf[: self._frame_extent()])
            if frames:
                f = frames[0]
                del self.buf[: self._frame_extent()]
                return f
            if not self._fill(deadline):
                return None

    def _frame_extent(self):
        """Length of the first complete frame in the buffer, or 0."""
        b = self.buf
        if len(b) < 2:
            return 0
        n = b[1] & 0x7F
        j = 2
        if n == 126:
            if len(b) < 4:
                return 0
            n = struct.unpack_from("!H", b, 2)[0]
            j = 4
        elif n == 127:
            if len(b) < 10:
                return 0
            n = struct.unpack_from("!Q", b, 2)[0]
            j = 10
        if b[1] & 0x80:
            j += 4
        return j + n if len(b) >= j + n else 0

    def recv_message(self, timeout=5.0, answer_pings=True):
        """The next data message (opcode, payload), reassembled; control
        frames on the way are answered (pings) or skipped. A close frame is
        returned as (OP_CLOSE, Frame)."""
        deadline = time.monotonic() + timeout
        parts = []
        first = None
        inflate = False
        while True:
            f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f is None:
                raise Closed("connection closed while waiting for a message")
            if f.opcode == OP_CLOSE:
                return OP_CLOSE, f
            if f.opcode == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if first is None:
                first = f.opcode
                inflate = bool(f.rsv & 4)
            parts.append(f.payload)
            if f.fin:
                data = b"".join(parts)
                if inflate:
                    d = zlib.decompressobj(-15)
                    data = d.decompress(data + b"\x00\x00\xff\xff")
                return first, data

    def expect_close(self, timeout=5.0):
        """Reads frames until a close frame; returns it (None on EOF)."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f is None or f.opcode == OP_CLOSE:
                return f

    def wait_eof(self, timeout=5.0):
        """True when the peer closes the TCP connection before the deadline;
        discards whatever arrives meanwhile."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._fill(deadline)
            except TimeoutError:
                return False
            self.buf.clear()
        return True

    def reset(self):
        """Closes with RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def http_exchange(port, request, timeout=5.0):
    """Sends raw request bytes on a new connection; returns the HttpAnswer."""
    c = RawClient(port, timeout=timeout)
    try:
        c.send(request)
        return c.read_http(timeout=timeout)
    finally:
        c.close()
