"""Failover when a backend's socket is reset, and how moves share the dial
slots.

A backend process that dies with unread data in its sockets resets them
(RST) instead of closing them. The log must say so, the messages the
backend never answered are counted as possibly lost, and a message whose
write meets the reset goes to the next backend instead of being lost.
Moving sessions wait for one of --migration-concurrency dial slots and get
one as soon as a dial ends.
"""

import glob
import re
import signal
import socket
import struct
import threading
import time

import pytest

from fleet import bearer, post
from harness import wait_for
from rawws import OP_CLOSE, OP_TEXT, RawClient, accept_for, parse_frames


class RawBackend:
    """A WebSocket backend on plain sockets, run by the test: it answers each
    upgrade after `delay_101` seconds, echoes text as "<name>:<text>" unless
    `silent`, records what it got, and resets its connections on demand
    (SO_LINGER 0, as a killed process with unread data does)."""

    def __init__(self, name, delay_101=0.0):
        self.name = name
        self.delay_101 = delay_101
        self.silent = False
        self.lock = threading.Lock()
        self.conns = []
        self.to_reset = set()
        self.received = []      # text messages, in arrival order
        self.paths = []         # of the upgrade requests, in arrival order
        self.upgrading = 0      # upgrades not answered yet
        self.most_upgrading = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(30)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head).group(1)
            with self.lock:
                self.paths.append(head.split(b" ", 2)[1].decode())
            accept = accept_for(key.decode()).encode()
            with self.lock:
                self.upgrading += 1
                self.most_upgrading = max(self.most_upgrading, self.upgrading)
            time.sleep(self.delay_101)
            with self.lock:
                self.upgrading -= 1
                self.conns.append(conn)
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self._relay(conn)
        except OSError:
            pass
        finally:
            with self.lock:
                if conn in self.conns:
                    self.conns.remove(conn)
                self.to_reset.discard(conn)
            conn.close()

    def _relay(self, conn):
        # A socket closed by another thread while this one waits in recv()
        # stays open until recv() returns: the reset is done here.
        conn.settimeout(0.05)
        rest = b""
        while True:
            if conn in self.to_reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            frames, rest = parse_frames(rest + data)
            for f in frames:
                if f.opcode == OP_CLOSE:
                    conn.sendall(struct.pack("!BB", 0x88, 2) + f.payload[:2])
                    return
                if f.opcode != OP_TEXT:
                    continue
                text = f.payload.decode()
                with self.lock:
                    self.received.append(text)
                if not self.silent:
                    out = f"{self.name}:{text}".encode()
                    conn.sendall(struct.pack("!BB", 0x81, len(out)) + out)

    def got(self):
        with self.lock:
            return list(self.received)

    def reset_all(self):
        with self.lock:
            self.to_reset.update(self.conns)
        wait_for(lambda: not self.to_reset, 5, what=f"{self.name}'s connections to reset")

    def stop(self):
        self.running = False
        self.listener.close()


@pytest.fixture
def raw_backends():
    made = []

    def make(*args, **kw):
        made.append(RawBackend(*args, **kw))
        return made[-1]

    yield make
    for b in made:
        b.stop()


def metric(g, name):
    m = re.search(rf"^{name} (\d+)$", g.get("/metrics").text, re.M)
    return int(m.group(1)) if m else None


def all_stopped(pid):
    """Every thread of the process is stopped (a signal stops them one by one)."""
    tasks = glob.glob(f"/proc/{pid}/task/*/stat")
    return tasks and all(open(t).read().rsplit(")", 1)[1].split()[0] == "T" for t in tasks)


def open_many(g, n, name):
    """n raw clients, on the paths /<name>?clientId=<name><i>."""
    clients = []
    for i in range(n):
        c = RawClient(g.ws_port)
        c.handshake(f"/{name}?clientId={name}{i}")
        clients.append(c)
    return clients


def open_on(g, backends, path="/r?clientId=c"):
    """A raw client whose session landed on one of `backends` (the
    gateway balances round-robin): (client, its backend, the other one)."""
    before = {b.name: len(b.conns) for b in backends}
    c = RawClient(g.ws_port)
    c.handshake(path)
    landed = wait_for(lambda: [b for b in backends if len(b.conns) > before[b.name]], 5,
                      what="the session to reach a backend")[0]
    other = next(b for b in backends if b is not landed)
    return c, landed, other


def test_reset_backend_is_logged_as_reset_and_unanswered_messages_counted(make_gateway,
                                                                          raw_backends):
    a, b = raw_backends("a"), raw_backends("b")
    g = make_gateway([a.addr, b.addr], args=["--threads", "1"])
    c, victim, heir = open_on(g, [a, b])
    victim.silent = True
    for i in range(3):
        c.send_frame(OP_TEXT, f"m{i}".encode())
    wait_for(lambda: len(victim.got()) == 3, 5, what="three messages on the victim")

    victim.reset_all()
    line = g.wait_log(r"session moving")[0]
    assert 'why="connection reset by peer"' in line, line
    assert "bad file descriptor" not in g.stderr()
    wait_for(lambda: metric(g, "wsgate_migrations_total") == 1, 5, what="the move")
    assert metric(g, "wsgate_migration_unanswered_messages_total") == 3

    # The session goes on with the heir, and what it answers is counted
    # as answered: a later failure of the heir loses nothing it answered.
    c.send_frame(OP_TEXT, b"m3")
    assert c.recv_message()[1].decode() == f"{heir.name}:m3"
    assert heir.got() == ["m3"]
    c.close()


def test_message_meeting_a_reset_goes_to_the_next_backend(make_gateway, raw_backends):
    """The message is read while the backend's reset is not yet seen: its
    write fails at once, so no backend has it, and the next one gets it."""
    a, b = raw_backends("a"), raw_backends("b")
    g = make_gateway([a.addr, b.addr], args=["--threads", "1"])
    c, victim, heir = open_on(g, [a, b])
    c.send_frame(OP_TEXT, b"first")
    assert c.recv_message()[1].decode() == f"{victim.name}:first"

    # Stopped, the gateway sees both at once, in the order they came: the
    # client's message first, the reset second. (Its epoll keeps a socket
    # it has just read from on the ready list until its next wait, so it
    # is let settle first: else the backend's socket would come first.)
    time.sleep(0.3)
    g.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: all_stopped(g.proc.pid), 5, what="every thread of the gateway to stop")
        c.send_frame(OP_TEXT, b"second")
        time.sleep(0.2)
        victim.reset_all()
        time.sleep(0.2)
    finally:
        g.proc.send_signal(signal.SIGCONT)

    got = c.recv_message()[1].decode()
    assert got == f"{heir.name}:second", (got, victim.got(), heir.got(), g.log_lines()[-3:])
    assert heir.got() == ["second"]
    assert victim.got() == ["first"]
    line = g.wait_log(r"session moving")[0]
    assert 'why="cannot write to the backend: connection reset by peer"' in line, line
    assert metric(g, "wsgate_migration_dropped_messages_total") == 0
    assert metric(g, "wsgate_migration_unanswered_messages_total") == 0
    c.close()


@pytest.mark.timeout(60)
def test_moves_queue_for_dial_slots(make_gateway, raw_backends):
    """20 sessions leave at once with 2 dial slots and an heir that takes
    50 ms per upgrade: never more than 2 dials at a time, and every session
    moves, the others queueing for a slot rather than failing."""
    a, heir = raw_backends("a"), raw_backends("h", delay_101=0.05)
    g = make_gateway([a.addr, heir.addr], args=["--threads", "1", "--migration-concurrency", "2",
                                      "--migration-timeout", "20s"])
    clients = open_many(g, 40, "q")
    wait_for(lambda: len(a.conns) == 20 and len(heir.conns) == 20, 10,
             what="20 sessions on each backend")
    heir.most_upgrading = 0

    a.reset_all()
    wait_for(lambda: metric(g, "wsgate_migrations_total") == 20, 15, what="20 moves")
    assert heir.most_upgrading <= 2, heir.most_upgrading
    assert len(heir.conns) == 40
    assert metric(g, "wsgate_migrations_failed_total") == 0
    for i, c in enumerate(clients):
        c.send_frame(OP_TEXT, f"after{i}".encode())
        assert c.recv_message()[1].decode() == f"h:after{i}"
        c.close()


def register(g, backend, **extra):
    r = post(g, "/register", {"id": backend.name, "host": "127.0.0.1", "port": backend.port,
                              "wsPort": backend.port, **extra}, headers=bearer(g))
    assert r.status_code == 200, r.text


@pytest.mark.timeout(60)
def test_a_queued_dial_still_times_out(make_gateway, raw_backends):
    """A dial started from the queue keeps UPSTREAM_TIMEOUT. One slot: the
    first session takes the only place on h1, which is slow to answer, and
    the others queue; of the two backends left, a mute one never answers.
    The queued session that dials it tries h2 after 0.5 s, rather than
    holding the slot until the 6 s MIGRATION_TIMEOUT closes everyone behind
    it with 1013."""
    a = raw_backends("a")
    g = make_gateway([a.addr], args=["--threads", "1", "--migration-concurrency", "1",
                                     "--upstream-timeout", "500ms", "--migration-timeout", "6s",
                                     "--server-timeout", "60s"])
    clients = open_many(g, 6, "t")
    wait_for(lambda: len(a.conns) == 6, 5, what="6 sessions on a")
    h1 = raw_backends("h1", delay_101=0.3)
    register(g, h1, maxConnections=1)

    a.reset_all()
    wait_for(lambda: h1.upgrading == 1, 5, what="the first dial on h1")
    mute, h2 = raw_backends("mute", delay_101=30), raw_backends("h2")
    register(g, mute)
    register(g, h2)
    wait_for(lambda: metric(g, "wsgate_migrations_total") == 6, 5, what="6 moves")
    assert mute.upgrading == 1, "no session tried the mute backend"
    assert g.wait_log(r"backend unreachable backend=mute .*did not answer in time")
    assert metric(g, "wsgate_migrations_failed_total") == 0
    answers = []
    for i, c in enumerate(clients):
        c.send_frame(OP_TEXT, f"t{i}".encode())
        answers.append(c.recv_message()[1].decode().split(":")[0])
        c.close()
    assert sorted(answers) == ["h1"] + ["h2"] * 5, answers


@pytest.mark.timeout(60)
def test_a_session_that_ends_while_queued_is_not_dialled(make_gateway, raw_backends):
    """Clients that go away while their sessions wait for a dial slot end
    those sessions: when the slot frees, no backend is dialled for them."""
    a = raw_backends("a")
    g = make_gateway([a.addr], args=["--threads", "1", "--migration-concurrency", "1",
                                     "--server-timeout", "60s"])
    clients = {f"/e?clientId=e{i}": c for i, c in enumerate(open_many(g, 4, "e"))}
    wait_for(lambda: len(a.conns) == 4, 5, what="4 sessions on a")
    heir = raw_backends("h", delay_101=0.5)
    register(g, heir)

    a.reset_all()
    first = wait_for(lambda: heir.paths, 5, what="the first dial")[0]
    for path, c in clients.items():
        if path != first:
            c.reset()
    g.wait_log(r"connection closed .*client closed|connection reset", count=3)
    wait_for(lambda: metric(g, "wsgate_migrations_total") == 1, 5, what="the first move")
    time.sleep(0.5)
    assert heir.paths == [first], heir.paths
    c = clients[first]
    c.send_frame(OP_TEXT, b"still here")
    assert c.recv_message()[1].decode() == "h:still here"
    c.close()
