"""Logs: one "connection open" and one "connection closed" info line per
WebSocket session, nothing per message; --log-format json makes every line
a JSON object."""

import json
import re

import websockets

from harness import run

SESSIONS = 3
MESSAGES = 100


def fields(line):
    return dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))


async def traffic(g, n=SESSIONS, messages=MESSAGES, code=1000):
    for i in range(n):
        async with websockets.connect(g.ws_url(f"/log{i}?q={i}")) as ws:
            for j in range(messages):
                await ws.send(f"m{j}")
                assert await ws.recv() == f"m{j}"
            await ws.close(code, "done")


def test_one_open_and_one_closed_line_per_session(gateway, echo_backend):
    before = len(gateway.log_lines())
    run(traffic(gateway))
    gateway.wait_log("connection closed", count=SESSIONS)
    new = gateway.log_lines()[before:]
    opens = [l for l in new if "connection open" in l]
    closes = [l for l in new if "connection closed" in l]
    assert len(opens) == SESSIONS and len(closes) == SESSIONS, new
    # Nothing else at info level: in particular nothing per message.
    assert len(new) == 2 * SESSIONS, new
    by_conn = {fields(o)["conn"]: o for o in opens}
    assert len(by_conn) == SESSIONS, opens
    for c in closes:
        fc = fields(c)
        assert fc.get("conn") in by_conn, (c, opens)
        o = by_conn.pop(fc["conn"])
        fo = fields(o)
        for key in ("client", "backend"):
            assert key in fo and key in fc, (o, c)
        assert fo["client"].startswith("127.0.0.1")
        assert fo["client"] == fc["client"]
        assert fo["backend"] == fc["backend"] == echo_backend.addr
        assert fc["code"] == "1000", c
        assert re.search(r"\binfo\b", o) and re.search(r"\binfo\b", c), (o, c)
    assert not by_conn


def test_close_code_is_logged(gateway):
    run(traffic(gateway, n=1, messages=1, code=4001))
    line = gateway.wait_log("connection closed")[0]
    assert fields(line)["code"] == "4001", line


def test_refused_handshakes_are_not_logged_as_sessions(gateway):
    """A refused upgrade is no WebSocket session: no open/closed lines."""
    from rawws import http_exchange

    before = len(gateway.log_lines())
    for _ in range(3):
        http_exchange(gateway.ws_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    new = gateway.log_lines()[before:]
    assert not [l for l in new if "connection open" in l or "connection closed" in l], new


def test_json_log_format_every_line_is_an_object(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--log-format", "json"])
    run(traffic(g, n=2, messages=5))
    g.wait_log("connection closed", count=2)
    g.signal()
    assert g.wait_exit(10) == 0
    lines = g.log_lines()
    assert lines
    objs = []
    for line in lines:
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        objs.append(obj)
    msgs = [o.get("msg") for o in objs]
    assert msgs.count("connection open") == 2 and msgs.count("connection closed") == 2
    for o in objs:
        if o.get("msg") == "connection closed":
            assert o["code"] == 1000 and "conn" in o and "client" in o and "backend" in o
            assert o.get("level") == "info"


def test_json_log_format_with_generated_key(make_gateway, echo_backend):
    """The generated-key warning is a log line too: JSON like every other."""
    g = make_gateway([echo_backend], ["--log-format", "json"], key=False)
    g.signal()
    assert g.wait_exit(10) == 0
    for line in g.log_lines():
        assert isinstance(json.loads(line), dict), line


def test_warn_level_hides_session_lines(make_gateway, echo_backend):
    g = make_gateway([echo_backend], ["--log-level", "warn"])
    run(traffic(g, n=2, messages=3))
    g.signal()
    assert g.wait_exit(10) == 0
    assert not [l for l in g.log_lines() if "connection open" in l or " info " in l]
