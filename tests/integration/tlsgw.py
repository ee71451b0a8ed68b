"""TLS around the harness processes: a gateway whose listeners speak TLS
(readiness and requests over https, trusting the test CA), a peers.py
backend served as wss:// (tls_peers.py), and a one-shot TLS handshake
that reports what the server showed."""

import socket
import subprocess
import time

import requests

from certs import client_context
from harness import PYTHON, HERE, Backend, Gateway, _die_with_parent, port_accepts, wait_for

TLS_PEERS = str(HERE / "tls_peers.py")


class TlsGateway(Gateway):
    """A Gateway whose WebSocket and/or HTTP port is TLS; `ca` verifies
    its certificate. The TLS flags themselves go in `args`."""

    def __init__(self, tmp, backends=(), args=(), ca=None, ws_tls=True, http_tls=True, **kw):
        super().__init__(tmp, backends, args, **kw)
        self.ca = str(ca)
        self.ws_tls, self.http_tls = ws_tls, http_tls

    def ws_url(self, path="/"):
        return f"{'wss' if self.ws_tls else 'ws'}://127.0.0.1:{self.ws_port}{path}"

    def http_url(self, path):
        return f"{'https' if self.http_tls else 'http'}://127.0.0.1:{self.http_port}{path}"

    def get(self, path, timeout=2.0, **kw):
        return requests.get(self.http_url(path), timeout=timeout, verify=self.ca, **kw)

    def wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wsgate exited with {self.proc.returncode}: {self.stderr()}")
            try:
                if self.get("/healthz", timeout=0.5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"wsgate did not become healthy: {self.stderr()}")

    def client_ssl(self, **kw):
        """An SSLContext for websockets.connect(..., ssl=...)."""
        return client_context(self.ca, **kw)


class TlsBackend(Backend):
    """A peers.py backend (any WebSocket mode) served with TLS."""

    def __init__(self, tmp, mode, name, cert, key, args=()):
        self.mode = mode
        self.name = name
        self.events_path = tmp / f"backend-{name}.events"
        self.progress_path = tmp / f"backend-{name}.progress"
        self.stderr_path = tmp / f"backend-{name}.stderr"
        self.events_path.touch()
        cmd = [PYTHON, TLS_PEERS, "--cert", str(cert), "--key", str(key), mode,
               "--events", str(self.events_path), "--name", name,
               "--progress", str(self.progress_path), *map(str, args)]
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err,
                                     cwd=tmp, preexec_fn=_die_with_parent)
        self.port = self._read_port(10.0)
        wait_for(lambda: port_accepts(self.port), 5, what=f"backend {name} to accept")


class Shown:
    """What one TLS handshake showed: the verified peer certificate (as
    ssl.getpeercert() decodes it), the protocol version and the ALPN
    protocol selected (None when none)."""

    def __init__(self, cert, version, alpn):
        self.cert, self.version, self.alpn = cert, version, alpn

    def __repr__(self):
        return f"Shown({self.cert.get('subject')}, serial={self.cert.get('serialNumber')}, " \
               f"{self.version}, alpn={self.alpn})"


def handshake(port, ca, server_name=None, timeout=5.0, **ctx_kw):
    """One TLS handshake with 127.0.0.1:port, sending SNI server_name (none
    when None). Raises ssl.SSLError or OSError when it fails."""
    ctx = client_context(ca, **ctx_kw)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            return Shown(s.getpeercert(), s.version(), s.selected_alpn_protocol())
