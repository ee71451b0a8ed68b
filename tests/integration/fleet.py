"""Fleets of registered backends (seed_backend.py processes) and the
clients that stream through them, for the registration, balancing, sticky,
failover and drain tests.

Each test module defines its `seeds` fixture over Fleet.
"""

import asyncio
import base64
import json
import os
import re
import select
import signal
import struct
import subprocess
import time
from datetime import datetime, timezone

import requests
import websockets

from harness import HERE, PYTHON, _die_with_parent, read_events
from rawws import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, accept_for

SEED = str(HERE / "seed_backend.py")

# Gateway timings that make registered backends come and go quickly.
FAST = ["--heartbeat-interval", "200", "--server-timeout", "1000"]
HEARTBEAT_MS = 200


# ---- backends ------------------------------------------------------------


class SeedBackend:
    """One seed_backend.py process registered with a gateway."""

    def __init__(self, tmp, gateway, backend_id, args=(), heartbeat_ms=HEARTBEAT_MS):
        self.id = backend_id
        self.events_path = tmp / f"seed-{backend_id}.events"
        self.stderr_path = tmp / f"seed-{backend_id}.stderr"
        self.events_path.touch()
        cmd = [PYTHON, SEED, "--gateway", f"http://127.0.0.1:{gateway.http_port}",
               "--auth-key", gateway.key, "--id", backend_id,
               "--heartbeat-interval", str(heartbeat_ms), "--events", str(self.events_path),
               *map(str, args)]
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err,
                                     preexec_fn=_die_with_parent)
        self.stopped = False
        line = self._line(10)
        assert line.startswith("PORTS "), f"{backend_id}: {line!r} {self.stderr()}"
        self.ws_port, self.http_port = map(int, line.split()[1:])
        line = self._line(10)
        assert line == "REGISTERED", f"{backend_id}: {line!r} {self.stderr()}"

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.proc.stdout], [], [], max(0, left))
            if not r:
                raise TimeoutError(f"backend {self.id}: no output: {self.stderr()}")
            ch = os.read(self.proc.stdout.fileno(), 1)
            if not ch:
                raise RuntimeError(f"backend {self.id} exited: {self.stderr()}")
            buf += ch
        return buf.decode().strip()

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def events(self, ev=None):
        return read_events(self.events_path, ev)

    # ---- failures a test inflicts ----

    def kill(self):
        """SIGKILL: the process dies, the kernel closes its sockets."""
        if self.stopped:
            self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait(5)

    def sigstop(self):
        """SIGSTOP: hung, sockets open, no heartbeats."""
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def cleanup(self):
        if self.proc.poll() is None:
            if self.stopped:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stdout.close()
        self._err.close()


class Fleet:
    """The backends of one test: `with Fleet(tmp_path) as seeds:` gives
    seeds(gateway, id, args...), which starts a registered backend; every
    one is killed at the end (stopped ones are continued first). Test
    modules wrap it in their `seeds` fixture."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.started = []

    def __call__(self, gateway, backend_id, *args, heartbeat_ms=HEARTBEAT_MS):
        b = SeedBackend(self.tmp, gateway, backend_id, args, heartbeat_ms)
        self.started.append(b)
        return b

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for b in self.started:
            b.cleanup()


# ---- the gateway's HTTP port ---------------------------------------------


def bearer(g):
    return {"Authorization": f"Bearer {g.key}"}


def post(g, path, body=None, headers=None, data=None, timeout=3.0):
    """POSTs JSON (or raw `data`) to the gateway's HTTP port."""
    if data is None and body is not None:
        data = json.dumps(body)
    h = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(g.http_url(path), data=data, headers=h, timeout=timeout)


def stats(g):
    r = requests.get(g.http_url("/api/stats"), headers=bearer(g), timeout=3)
    assert r.status_code == 200, r.text
    return r.json()


def servers(g):
    return {s["id"]: s for s in stats(g)["servers"]}


def registration(g, backend_id="b1", ws_port=1, http_port=2, **extra):
    body = {"id": backend_id, "host": "127.0.0.1", "publicHost": "play.example.com",
            "port": http_port, "wsPort": ws_port, "maxConnections": 100, "authKey": g.key}
    body.update(extra)
    return body


def log_time(line):
    """The wall-clock time (seconds) a gateway log line was written."""
    stamp = line.split(" ", 1)[0]
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return when.replace(tzinfo=timezone.utc).timestamp()


def log_times(g, pattern):
    """Wall-clock times of the gateway log lines matching pattern."""
    rx = re.compile(pattern)
    return [log_time(line) for line in g.log_lines() if rx.search(line)]


def moves_by_client_port(g, backend_id):
    """{client port: wall time} of the gateway's "session moving" lines for
    the sessions of one backend, joined to their "connection open" lines."""
    conn_port = {}
    moved = {}
    for line in g.log_lines():
        m = re.search(r"connection open conn=(\d+) client=[^ ]*:(\d+) ", line)
        if m:
            conn_port[m.group(1)] = int(m.group(2))
        m = re.search(rf"session moving conn=(\d+) from={re.escape(backend_id)} ", line)
        if m:
            moved[conn_port.get(m.group(1))] = log_time(line)
    return moved


# ---- WebSocket clients ---------------------------------------------------


async def whoami(url, **kw):
    async with websockets.connect(url, **kw) as ws:
        await ws.send("whoami")
        return json.loads(await ws.recv())


class SeqClient(asyncio.Protocol):
    """A lean WebSocket client for hundreds of streaming sessions in one
    process: the websockets library costs a task and several awaits per
    frame, which two cores shared with the gateway and the backends cannot
    afford at thousands of messages a second. It answers pings, records
    every text message with its arrival time, and notes a close. Frames
    from the gateway are never masked or fragmented here (seq answers are
    short texts)."""

    def __init__(self):
        self.transport = None
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.received = []  # (wall time, text)
        self.sent = []      # (wall time, seq)
        self.close_code = None
        self.close_reason = None
        self.closed_by_us = False
        self.lockstep = False  # see start_lockstep

    @classmethod
    async def open(cls, port, path, headers=(), timeout=10.0):
        loop = asyncio.get_running_loop()
        _, c = await loop.create_connection(cls, "127.0.0.1", port)
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {c.key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in headers]
        c.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await asyncio.wait_for(c.upgraded, timeout)
        return c

    def connection_made(self, transport):
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def data_received(self, data):
        self.buf += data
        if not self.upgraded.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[: end + 4]
            status = head.split(" ", 2)[1]
            if status != "101" or accept_for(self.key) not in head:
                self.upgraded.set_exception(AssertionError(f"upgrade refused: {head}"))
                self.transport.close()
                return
            self.upgraded.set_result(True)
        self._frames()

    def _frames(self):
        b = self.buf
        while len(b) >= 2:
            n = b[1] & 0x7F
            j = 2
            if n == 126:
                if len(b) < 4:
                    return
                n = struct.unpack_from("!H", b, 2)[0]
                j = 4
            elif n == 127:
                if len(b) < 10:
                    return
                n = struct.unpack_from("!Q", b, 2)[0]
                j = 10
            if len(b) < j + n:
                return
            op, payload = b[0] & 0x0F, bytes(b[j: j + n])
            del b[: j + n]
            if op == OP_TEXT:
                text = payload.decode()
                self.received.append((time.time(), text))
                if self.lockstep and self.sent and text.endswith(f":{self.sent[-1][1]}"):
                    self.send_seq(self.sent[-1][1] + 1)
            elif op == OP_PING:
                self._frame(OP_PONG, payload)
            elif op == OP_CLOSE:
                if self.close_code is None:
                    self.close_code = (struct.unpack("!H", payload[:2])[0] if len(payload) >= 2
                                       else 1005)
                    self.close_reason = payload[2:].decode(errors="replace")
                    self._frame(OP_CLOSE, payload[:2])
                self.transport.close()

    def _frame(self, op, payload):
        if self.transport.is_closing():
            return
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | op, 0x80 | n)
        else:
            head = struct.pack("!BBH", 0x80 | op, 0xFE, n)
        mask = os.urandom(4)
        self.transport.write(head + mask + bytes(c ^ mask[i & 3] for i, c in enumerate(payload)))

    def send(self, text):
        self._frame(OP_TEXT, text.encode())

    def send_seq(self, n):
        self.sent.append((time.time(), n))
        self.send(str(n))

    def start_lockstep(self):
        """Request-response traffic: the next number goes out the moment
        the echo of the previous one arrives, so one is nearly always on
        its way to or from the backend."""
        self.lockstep = True
        self.send_seq(self.sent[-1][1] + 1 if self.sent else 0)

    def stop_lockstep(self):
        self.lockstep = False

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(exc)

    @property
    def is_closed(self):
        return self.closed.done()

    @property
    def dropped(self):
        """Closed by the other side (or the connection lost), not by us."""
        return self.closed.done() and not self.closed_by_us

    def close(self):
        if not self.closed.done():
            self.closed_by_us = True
        if not self.transport.is_closing():
            self._frame(OP_CLOSE, struct.pack("!H", 1000))
            self.transport.close()

    # ---- the "<server>:<seq>" echoes ----

    def echoes(self):
        """[(wall time, server, seq)] of the seq echoes received."""
        out = []
        for t, text in self.received:
            server, _, n = text.rpartition(":")
            if server and n.isdigit():
                out.append((t, server, int(n)))
        return out

    def servers(self):
        """The servers that answered, in order, without repeats."""
        seen = []
        for _, s, _ in self.echoes():
            if not seen or seen[-1] != s:
                seen.append(s)
        return seen


async def open_clients(port, paths, batch=50, headers=()):
    """Opens one SeqClient per path, `batch` handshakes at a time."""
    clients = []
    for i in range(0, len(paths), batch):
        opening = (SeqClient.open(port, p, headers) for p in paths[i: i + batch])
        clients += await asyncio.gather(*opening)
    return clients


class Streamer:
    """Sends the next sequence number on every client every `period`
    seconds, until stopped."""

    def __init__(self, clients, period=0.05):
        self.clients = clients
        self.period = period
        self.next = 0
        self.task = None
        self.tick_waiters = []

    def start(self):
        self.task = asyncio.ensure_future(self._run())
        return self

    async def _run(self):
        next_tick = time.monotonic()
        while True:
            for c in self.clients:
                if not c.is_closed:
                    c.send_seq(self.next)
            self.next += 1
            for w in self.tick_waiters:
                if not w.done():
                    w.set_result(None)
            self.tick_waiters = []
            next_tick += self.period
            await asyncio.sleep(max(0, next_tick - time.monotonic()))

    async def after_tick(self):
        """Returns right after the next round of numbers went out."""
        w = asyncio.get_running_loop().create_future()
        self.tick_waiters.append(w)
        await w

    async def stop(self, settle=5.0):
        """Stops sending and waits (at most `settle` s) until every open
        client got the echo of the last number it sent."""
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        last = self.next - 1
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if all(c.is_closed or (c.echoes() and c.echoes()[-1][2] == last) for c in self.clients):
                break
            await asyncio.sleep(0.05)
        return last


async def wait_until(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def check_stream(c, last, lost_window=None):
    """Asserts what the client got of the numbers 0..last: each at most once
    and in order; with lost_window=None nothing is missing, else only
    numbers sent within (start, end) wall-clock may be missing, and they
    form one contiguous run. Returns the missing numbers."""
    got = [n for _, _, n in c.echoes()]
    assert all(a < b for a, b in zip(got, got[1:])), f"duplicated or reordered: {_runs(got)}"
    missing = sorted(set(range(last + 1)) - set(got))
    if lost_window is None:
        assert not missing, f"lost {missing} (got {_runs(got)})"
        return missing
    if missing:
        sent_at = {n: t for t, n in c.sent}
        start, end = lost_window
        late = [n for n in missing if not (start <= sent_at[n] <= end)]
        assert not late, (f"lost {late} sent outside the failure window "
                          f"({[round(sent_at[n] - start, 3) for n in late]} s after its start, "
                          f"window {end - start:.3f} s); got {_runs(got)}")
        assert missing == list(range(missing[0], missing[-1] + 1)), f"lost {missing}: not one run"
    return missing


def _runs(ns):
    """Compact "0-41, 43-99" form of a sorted list of numbers."""
    out = []
    for n in ns:
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in out)
