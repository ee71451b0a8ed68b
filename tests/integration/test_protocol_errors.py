"""Clients that break RFC 6455 after a good handshake: each gets a close
frame with code 1002 and then the TCP close. Frames are built by hand."""

import struct

import pytest

from rawws import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawClient,
                   close_payload, encode_frame)

VIOLATIONS = {
    "unmasked-frame": [encode_frame(OP_TEXT, b"hello", mask=False)],
    "unmasked-empty-binary": [encode_frame(OP_BINARY, b"", mask=False)],
    "rsv1-without-deflate": [encode_frame(OP_TEXT, b"hello", rsv=4)],
    "rsv2": [encode_frame(OP_TEXT, b"hello", rsv=2)],
    "rsv3": [encode_frame(OP_BINARY, b"hello", rsv=1)],
    "rsv-on-ping": [encode_frame(OP_PING, b"x", rsv=4)],
    "opcode-3": [encode_frame(0x3, b"data")],
    "opcode-7": [encode_frame(0x7, b"data")],
    "opcode-0xB": [encode_frame(0xB, b"ctl")],
    "opcode-0xF": [encode_frame(0xF, b"")],
    "ping-over-125": [encode_frame(OP_PING, b"p" * 126)],
    "pong-over-125": [encode_frame(OP_PONG, b"p" * 200)],
    "close-over-125": [encode_frame(OP_CLOSE, close_payload(1000, b"r" * 124))],
    "fragmented-ping": [encode_frame(OP_PING, b"part", fin=False)],
    "fragmented-close": [encode_frame(OP_CLOSE, close_payload(1000), fin=False)],
    "continuation-without-start": [encode_frame(OP_CONT, b"orphan")],
    "final-continuation-without-start": [encode_frame(OP_CONT, b"orphan", fin=True)],
    "new-message-inside-fragmented": [encode_frame(OP_TEXT, b"first", fin=False),
                                      encode_frame(OP_TEXT, b"second")],
    "close-1-byte-payload": [encode_frame(OP_CLOSE, b"\x03")],
    "length-top-bit": [encode_frame(OP_BINARY, b"", length=1 << 63)],
    "length-all-ones": [encode_frame(OP_BINARY, b"", length=(1 << 64) - 1)],
}

INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


def expect_1002_then_tcp_close(c):
    f = c.expect_close(timeout=5)
    assert f is not None, "connection ended without a close frame"
    assert f.opcode == OP_CLOSE
    assert f.close_code == 1002, (f.close_code, f.close_reason)
    # Answer the close as a client should; the TCP close must follow.
    try:
        c.send_close(1002)
    except OSError:
        pass  # already closed by the gateway: just as good
    assert c.wait_eof(timeout=3), "gateway did not close the TCP connection"


def assert_still_serving(port):
    c = RawClient(port)
    try:
        c.handshake()
        c.send_frame(OP_TEXT, b"still here")
        assert c.recv_message() == (OP_TEXT, b"still here")
    finally:
        c.close()


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_violation_gets_1002(gateway, name):
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
        # A good message first: the session is established and relaying.
        c.send_frame(OP_TEXT, b"warm-up")
        assert c.recv_message() == (OP_TEXT, b"warm-up")
        for frame in VIOLATIONS[name]:
            c.send(frame)
        expect_1002_then_tcp_close(c)
    finally:
        c.close()
    assert_still_serving(gateway.ws_port)


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_invalid_close_code_gets_1002(gateway, code):
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
        c.send_frame(OP_CLOSE, struct.pack("!H", code) + b"bad")
        expect_1002_then_tcp_close(c)
    finally:
        c.close()


def test_violation_as_first_frame(gateway):
    """No message before the bad frame: same answer."""
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
        c.send(encode_frame(OP_TEXT, b"x", mask=False))
        expect_1002_then_tcp_close(c)
    finally:
        c.close()


def test_backend_is_told_when_a_client_is_failed(gateway, echo_backend):
    c = RawClient(gateway.ws_port)
    try:
        c.handshake()
        c.send(encode_frame(OP_CONT, b"orphan"))
        expect_1002_then_tcp_close(c)
    finally:
        c.close()
    # The backend's session ends too (with a close of the gateway's own).
    echo_backend.wait_event("close")
