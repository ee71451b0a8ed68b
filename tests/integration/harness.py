"""Processes under test: the real wsgate binary and the scripted backends
of peers.py, each started as its own process on loopback and always
stopped at teardown (the fixtures in conftest.py own them)."""

import asyncio
import ctypes
import json
import os
import re
import secrets
import select
import signal
import socket
import string
import subprocess
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WSGATE_BIN = os.environ.get("WSGATE_BIN", str(REPO / "build" / "wsgate"))
PYTHON = "/usr/bin/python3"
PEERS = str(HERE / "peers.py")

# Options of the gateway that the test environment must not leak into a
# run (a developer's shell may export some of them): every "(env NAME"
# that `wsgate --help` lists.
def _gateway_env_names():
    try:
        text = subprocess.run([WSGATE_BIN, "--help"], capture_output=True, text=True,
                              timeout=10).stdout
    except OSError:
        return set()
    return set(re.findall(r"\(env ([A-Z0-9_]+)", text))


GATEWAY_ENV_NAMES = _gateway_env_names()

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """Runs in the child before exec: if the test process dies, so does
    the child (no stray gateways or backends after a crash)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if k not in GATEWAY_ENV_NAMES and not k.startswith("WSGATE_")}
    env.update(extra or {})
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n different free ports: each held open until all are chosen, so the
    kernel cannot hand out the same one twice."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def random_key(n=32):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout, interval=0.02, what="condition"):
    """Polls until predicate() is truthy; returns its value or raises."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run(coro, timeout=30):
    """Runs an async test body with a hard deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def stop_process(proc, grace=5.0):
    """SIGTERM, wait, SIGKILL. Returns (returncode, was_killed)."""
    if proc.poll() is not None:
        return proc.returncode, False
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(grace), False
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5), True


def read_events(path, ev=None):
    """The JSON lines a backend wrote to its events file, of kind `ev`
    (all when None)."""
    out = []
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a line being written
        if ev is None or e.get("ev") == ev:
            out.append(e)
    return out


class Backend:
    def __init__(self, tmp, mode, name, args=()):
        self.mode = mode
        self.name = name
        self.events_path = tmp / f"backend-{name}.events"
        self.progress_path = tmp / f"backend-{name}.progress"
        self.stderr_path = tmp / f"backend-{name}.stderr"
        self.events_path.touch()
        cmd = [PYTHON, PEERS, mode, "--events", str(self.events_path), "--name", name,
               "--progress", str(self.progress_path), *map(str, args)]
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err,
                                     cwd=tmp, preexec_fn=_die_with_parent)
        self.port = self._read_port(10.0)
        wait_for(lambda: port_accepts(self.port), 5, what=f"backend {name} to accept")

    def _read_port(self, timeout):
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.proc.stdout], [], [], max(0, left))
            if not r:
                self.stop()
                raise RuntimeError(f"backend {self.name} did not start: {self.stderr()}")
            ch = os.read(self.proc.stdout.fileno(), 1)
            if not ch:
                raise RuntimeError(f"backend {self.name} exited: {self.stderr()}")
            line += ch
        assert line.startswith(b"PORT "), line
        return int(line.split()[1])

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def events(self, ev=None):
        return read_events(self.events_path, ev)

    def wait_event(self, ev, count=1, timeout=5.0, pred=lambda e: True):
        return wait_for(lambda: (lambda es: es if len(es) >= count else None)(
            [e for e in self.events(ev) if pred(e)]), timeout, what=f"{count} '{ev}' events on {self.name}")

    def progress(self):
        try:
            text = self.progress_path.read_text().strip()
            return int(text) if text else 0
        except FileNotFoundError:
            return 0

    def stop(self):
        stop_process(self.proc, grace=3)
        self.proc.stdout.close()
        self._err.close()


class Gateway:
    """One wsgate process. `backends` are Backend objects or HOST:PORT
    strings; `args` extra flags; `env` extra environment."""

    def __init__(self, tmp, backends=(), args=(), env=None, key=None, name="gw",
                 standard_flags=True, ws_port=None, http_port=None):
        self.tmp = tmp
        self.name = name
        # key=None: a random one; key=False: no key given (wsgate generates one).
        self.key = random_key() if key is None else key
        # standard_flags=False: the command is the binary and `args` only;
        # the caller says where the ports will be (for the readiness wait).
        self.standard_flags = standard_flags
        self.ws_port, self.http_port = ws_port, http_port
        self.backends = [b.addr if isinstance(b, Backend) else b for b in backends]
        self.args = [str(a) for a in args]
        self.env = clean_env(env)
        self.stderr_path = tmp / f"{name}.stderr"
        self.stdout_path = tmp / f"{name}.stdout"
        self.proc = None
        self.stopped_by_test = False

    def command(self):
        if not self.standard_flags:
            return [WSGATE_BIN] + self.args
        cmd = [WSGATE_BIN, "--bind", "127.0.0.1", "--ws-port", str(self.ws_port),
               "--websrv-port", str(self.http_port)]
        if self.key is not False:
            cmd += ["--gateway-auth-key", self.key]
        for b in self.backends:
            cmd += ["--backend", b]
        return cmd + self.args

    def start(self, timeout=10.0):
        for attempt in range(3):
            if self.standard_flags:
                self.ws_port, self.http_port = free_ports(2)
            with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
                self.proc = subprocess.Popen(self.command(), stdout=out, stderr=err, cwd=self.tmp,
                                             env=self.env, preexec_fn=_die_with_parent)
            try:
                self.wait_healthy(timeout)
                return self
            except RuntimeError:
                if self.standard_flags and attempt < 2 and "in use" in self.stderr().lower():
                    continue  # lost a race for a free port; pick others
                raise
        raise AssertionError("unreachable")

    def wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wsgate exited with {self.proc.returncode}: {self.stderr()}")
            try:
                if requests.get(self.http_url("/healthz"), timeout=0.5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"wsgate did not become healthy: {self.stderr()}")

    # ---- addresses -------------------------------------------------------

    def ws_url(self, path="/"):
        return f"ws://127.0.0.1:{self.ws_port}{path}"

    def http_url(self, path):
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path, timeout=2.0):
        return requests.get(self.http_url(path), timeout=timeout)

    def health(self):
        return self.get("/health").json()

    def connections(self):
        return self.health()["connections"]

    # ---- observation -----------------------------------------------------

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def log_lines(self):
        return self.stderr().splitlines()

    def wait_log(self, pattern, count=1, timeout=5.0):
        rx = re.compile(pattern)
        return wait_for(lambda: (lambda ls: ls if len(ls) >= count else None)(
            [l for l in self.log_lines() if rx.search(l)]), timeout,
            what=f"{count} log lines matching {pattern!r}")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    # ---- ending ----------------------------------------------------------

    def signal(self, sig=signal.SIGTERM):
        self.stopped_by_test = True
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        return self.proc.wait(timeout)

    def teardown(self):
        """Stops the process; returns a list of problems (empty if clean)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(4)
            except subprocess.TimeoutExpired:
                # Connections still draining: a second signal ends at once.
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(4)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
                    problems.append(f"{self.name} did not exit on SIGTERM; killed with SIGKILL")
            if self.proc.returncode not in (0, -signal.SIGKILL):
                problems.append(f"{self.name} exited with status {self.proc.returncode} on SIGTERM")
        err = self.stderr()
        for marker in ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                       "ThreadSanitizer", "runtime error:"):
            if marker in err:
                problems.append(f"{self.name}: sanitizer report in stderr:\n{err[-4000:]}")
                break
        return problems
