"""loadgen against echo_server directly, without the gateway.

Both binaries come from the Meson build (build/bench/, or $WSGATE_BUILD/bench).
Every run is small and short; the whole file takes about 30 seconds:

    ninja -C build && /usr/bin/python3 -m pytest tests/bench
"""
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(os.environ.get("WSGATE_BUILD", ROOT / "build")) / "bench"
LOADGEN = BENCH / "loadgen"
ECHO_SERVER = BENCH / "echo_server"

pytestmark = pytest.mark.skipif(
    not (LOADGEN.exists() and ECHO_SERVER.exists()),
    reason="bench tools not built: ninja -C build",
)

HIST_KEYS = {"count", "mean", "p50", "p90", "p99", "p999", "max"}
REPORT_KEYS = {
    "mode", "url", "connections", "procs", "connected", "failed", "dropped", "errors",
    "ramp_s", "handshake_ms", "rtt_ms", "messages_sent", "messages_received", "lost",
    "mismatches", "send_skipped", "duration_s", "warmup_s", "msgs_per_sec", "target_rate",
    "send_lag_ms", "inflight", "payload", "rss_kb", "rss_kb_max_proc", "procs_reported", "elapsed_s",
    "timed_out", "interrupted", "tls", "deflate", "gaps", "conns_last_echoed",
}


class EchoServer:
    """bench/echo_server in a subprocess; `port` is its first port."""

    def __init__(self, *args):
        self.args = list(args) or ["--port", "0"]
        self.proc = None
        self.port = None
        self.stderr = ""

    def __enter__(self):
        self.proc = subprocess.Popen(
            [str(ECHO_SERVER), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 5)
        line = self.proc.stdout.readline() if ready else ""
        match = re.match(r"listening \S+ ports (\d+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"echo_server did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(match.group(1))
        return self

    def stop(self):
        """SIGTERM; returns the exit status and keeps stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
        return self.proc.returncode

    def __exit__(self, *exc):
        self.stop()


def loadgen(*args, timeout=40):
    """Runs loadgen; returns (exit status, the JSON report, stderr)."""
    done = subprocess.run(
        [str(LOADGEN), *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 1, f"want one JSON line on stdout, got {done.stdout!r}\n{done.stderr}"
    return done.returncode, json.loads(lines[0]), done.stderr


def url(port, path="/"):
    return f"ws://127.0.0.1:{port}{path}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_hist(h):
    assert set(h) == HIST_KEYS
    assert 0 <= h["p50"] <= h["p90"] <= h["p99"] <= h["p999"] <= h["max"]


def test_help_lists_every_option():
    done = subprocess.run([str(LOADGEN), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for opt in ("--url", "--connections", "--ramp", "--mode", "--rate", "--inflight",
                "--payload", "--duration", "--warmup", "--source-ips", "--procs", "{i}"):
        assert opt in done.stdout
    assert subprocess.run([str(LOADGEN), "--url", "http://x/"],
                          capture_output=True).returncode == 2
    assert subprocess.run([str(ECHO_SERVER), "--help"], capture_output=True).returncode == 0


def test_idle_holds_every_connection():
    with EchoServer() as srv:
        rc, r, err = loadgen("--url", url(srv.port), "--connections", 500, "--mode", "idle",
                             "--duration", 1)
        assert srv.stop() == 0
    assert rc == 0, err
    assert set(r) == REPORT_KEYS
    assert r["mode"] == "idle" and r["connections"] == 500
    assert r["connected"] == 500 and r["failed"] == 0 and r["dropped"] == 0
    assert sum(r["errors"].values()) == 0
    check_hist(r["handshake_ms"])
    check_hist(r["rtt_ms"])
    assert r["handshake_ms"]["count"] == 500
    assert r["handshake_ms"]["p50"] < 1000
    assert r["rss_kb"] > 0 and not r["timed_out"]
    assert 1.0 <= r["elapsed_s"] < 10


def test_fixed_rate_echo_keeps_the_rate():
    with EchoServer() as srv:
        rc, r, err = loadgen("--url", url(srv.port), "--connections", 50, "--mode", "echo",
                             "--rate", 1000, "--duration", 2, "--payload", 64)
    assert rc == 0, err
    assert r["mismatches"] == 0 and r["lost"] == 0
    assert r["messages_received"] == r["messages_sent"]
    assert abs(r["messages_sent"] - 2000) <= 20
    assert abs(r["msgs_per_sec"] - 1000) <= 50
    assert r["rtt_ms"]["count"] == r["messages_received"]
    check_hist(r["rtt_ms"])
    assert r["rtt_ms"]["p50"] < 20


def test_closed_loop_keeps_w_in_flight():
    with EchoServer() as srv:
        rc, r, err = loadgen("--url", url(srv.port), "--connections", 20, "--mode", "echo",
                             "--inflight", 4, "--duration", 1, "--warmup", 0.3,
                             "--payload", 1000)
    assert rc == 0, err
    assert r["inflight"] == 4 and r["warmup_s"] == 0.3
    assert r["messages_sent"] == r["messages_received"] > 1000
    assert r["mismatches"] == 0
    assert r["msgs_per_sec"] == pytest.approx(r["messages_received"] / 1.0)


def test_path_template_reaches_the_server():
    with EchoServer("--port", "0", "--log-paths") as srv:
        rc, _, err = loadgen("--url", url(srv.port, "/?clientId=c{i}&again={i}"),
                             "--connections", 10, "--duration", 0)
        srv.stop()
    assert rc == 0, err
    paths = sorted(re.findall(r"^path (\S+)$", srv.stderr, re.M))
    assert paths == sorted(f"/?clientId=c{i}&again={i}" for i in range(10))


def test_stall_shows_in_the_tail():
    # 1000 msg/s over 50 connections: the stall starts after 1 s, and every
    # message scheduled during its 300 ms waits for it (no coordinated omission).
    with EchoServer("--port", "0", "--stall-after", "1000", "--stall-ms", "300") as srv:
        rc, r, err = loadgen("--url", url(srv.port), "--connections", 50, "--mode", "echo",
                             "--rate", 1000, "--duration", 3)
        srv.stop()
    assert "stalling 300 ms" in srv.stderr
    assert rc == 0, err
    assert r["messages_received"] == r["messages_sent"]
    assert r["rtt_ms"]["p999"] >= 250
    assert r["rtt_ms"]["max"] < 400
    assert r["rtt_ms"]["p50"] < 20


def test_nothing_listening_fails_every_connection():
    port = free_port()
    rc, r, err = loadgen("--url", url(port), "--connections", 20, "--duration", 1)
    assert rc != 0
    assert r["connected"] == 0 and r["failed"] == 20
    assert r["errors"]["refused"] == 20
    assert r["elapsed_s"] < 1.0  # nothing to hold
    assert "refused" in err


def test_silent_server_times_out_within_the_bound():
    # A listener that never accepts: TCP connects, the upgrade never comes.
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(64)
        port = lst.getsockname()[1]
        start = time.monotonic()
        rc, r, err = loadgen("--url", url(port), "--connections", 10, "--connect-timeout",
                             0.5, "--duration", 5)
        took = time.monotonic() - start
    assert rc != 0
    assert r["failed"] == 10 and r["errors"]["timeout"] == 10
    assert took < 3


def test_procs_split_the_indices_and_merge_the_results():
    with EchoServer("--port", "0", "--log-paths") as srv:
        rc, r, err = loadgen("--url", url(srv.port, "/c{i}"), "--connections", 301,
                             "--procs", 2, "--mode", "echo", "--rate", 600, "--duration", 1)
        srv.stop()
    assert rc == 0, err
    assert r["procs"] == 2 and r["procs_reported"] == 2
    assert r["connected"] == 301 and r["handshake_ms"]["count"] == 301
    assert r["messages_received"] == r["messages_sent"] == pytest.approx(600, abs=10)
    assert r["rss_kb"] > r["rss_kb_max_proc"] > 0
    paths = re.findall(r"^path /c(\d+)$", srv.stderr, re.M)
    assert sorted(map(int, paths)) == list(range(301))


def test_server_going_away_counts_as_drops():
    with EchoServer() as srv:
        lg = subprocess.Popen(
            [str(LOADGEN), "--url", url(srv.port), "--connections", "100", "--duration", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(1.0)
        assert srv.stop() == 0
        out, err = lg.communicate(timeout=20)
    r = json.loads(out)
    assert lg.returncode != 0
    assert r["connected"] == 100 and r["dropped"] == 100
    assert "dropped" in err


CORRUPTING_SERVER = r"""
import asyncio, websockets
async def echo(ws, path):
    async for m in ws:
        m = bytearray(m)
        m[-1] ^= 1          # one flipped bit in every echo
        await ws.send(bytes(m))
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


def test_corrupted_echoes_are_mismatches():
    pytest.importorskip("websockets")
    srv = subprocess.Popen([sys.executable, "-c", CORRUPTING_SERVER], stdout=subprocess.PIPE,
                           text=True)
    try:
        ready, _, _ = select.select([srv.stdout], [], [], 10)
        assert ready, "the corrupting server did not start"
        port = int(srv.stdout.readline())
        rc, r, err = loadgen("--url", url(port), "--connections", 5, "--mode", "echo",
                             "--inflight", 1, "--duration", 0.5)
    finally:
        srv.kill()
        srv.wait()
    assert rc != 0
    assert r["connected"] == 5
    assert r["mismatches"] > 0 and r["mismatches"] == r["lost"]
    assert "differs" in err


def test_echo_server_workers_share_ports():
    ports = sorted({free_port(), free_port()})
    args = [a for p in ports for a in ("--port", str(p))]
    with EchoServer(*args, "--procs", "2") as srv:
        for port in ports:
            rc, r, err = loadgen("--url", url(port), "--connections", 200, "--mode", "echo",
                                 "--inflight", 1, "--duration", 0.5)
            assert rc == 0, err
            assert r["connected"] == 200 and r["mismatches"] == 0
        start = time.monotonic()
        assert srv.stop() == 0
        assert time.monotonic() - start < 3
