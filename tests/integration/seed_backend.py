"""A backend that behaves like a seed-000 game server, for the wsgate
registration, balancing, sticky-session, failover and drain tests.

Run as its own process (never imported by the gateway):

    /usr/bin/python3 seed_backend.py --gateway http://127.0.0.1:8000 \
        --auth-key KEY --id b1 [options]

What it does, as a seed-000 backend does:

  * serves WebSocket on --ws-port (python websockets) and plain HTTP on
    --port (GET /health answers 200), both on 127.0.0.1 (port 0: any);
  * POSTs /register {id, host, publicHost, port, wsPort, maxConnections,
    authKey} (plus service, group and weight when given) to the gateway,
    retrying until it is accepted;
  * POSTs /heartbeat {serverId, activeConnections, cpuUsage, ramUsage,
    ramTotal, authKey} every --heartbeat-interval ms; a 404 means the gateway
    forgot it, so it registers again;
  * with --unregister-on-exit, POSTs /unregister on SIGTERM before exiting.

Its stdout says "PORTS <ws> <http>" once it listens and "REGISTERED" after the
first accepted registration. Everything else it observes is appended to the
--events file as one JSON object per line ("register", "heartbeat",
"open", "close", and with --log-answers "answer" or "unsent" for each
sequence number), so a test can read what it saw without sharing memory.

WebSocket behaviour (text messages):

  whoami         answers {"server": id, "conn": n, "path": path,
                 "headers": {...}} where headers holds the request's X-*
                 headers (X-Wsgate-Migrated-From included), Cookie, Host
                 and User-Agent; conn numbers this backend's connections.
  N (digits)     on a connection opened with "mode=seq" in its query, answers
                 "<id>:N", so a client sees which backend served each message;
                 --seq-delay-ms makes each answer take that long (a backend at
                 work). Answers keep frame order: every number that arrived
                 before a close frame is answered before the close is.
  close C R      closes the connection with code C and reason R.
  anything else  echoed (binary too).
"""

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import websockets

REPORTED_HEADERS = ("cookie", "host", "user-agent")


class Events:
    """Append-only JSON-lines log, shared by the loop and the heartbeat
    thread (one write per line, so lines never interleave)."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1) if path else None
        self.lock = threading.Lock()

    def emit(self, **fields):
        if self.f is None:
            return
        fields["t"] = time.time()
        line = json.dumps(fields) + "\n"
        with self.lock:
            self.f.write(line)


class InOrderProtocol(websockets.WebSocketServerProtocol):
    """Answers sequence numbers from the task that reads the frames, before
    it reads the next frame, as a backend whose message handler runs
    synchronously (Bun, Node: seed 000's) does. A stock handler answers from
    another task, after the library may already have answered a close frame
    that came in the same read, so the answer would never be sent."""

    backend = None  # the Backend, set before serving

    async def read_message(self):
        while True:
            msg = await super().read_message()
            if not (isinstance(msg, str) and msg.isdigit() and self._seq_mode()):
                return msg
            b = self.backend
            try:
                if b.args.seq_delay_ms:
                    await asyncio.sleep(b.args.seq_delay_ms / 1000.0)
                await self.send(f"{b.args.id}:{msg}")
            except websockets.ConnectionClosed:
                if b.args.log_answers:
                    b.events.emit(ev="unsent", path=self.path, seq=int(msg),
                                  close_code=self.close_code)
                return None
            if b.args.log_answers:
                b.events.emit(ev="answer", path=self.path, seq=int(msg))

    def _seq_mode(self):
        if not hasattr(self, "_seq"):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            self._seq = "seq" in query.get("mode", [])
        return self._seq


class Backend:
    def __init__(self, args):
        self.args = args
        self.events = Events(args.events)
        self.active = 0
        self.conn_ids = 0
        self.ws_port = None
        self.http_port = None
        self.stop = threading.Event()

    # ---- the registration API -------------------------------------------

    def post(self, path, body):
        """POSTs JSON to the gateway; returns (status, parsed body or None).
        Network errors return (None, None)."""
        data = json.dumps(body).encode()
        req = urllib.request.Request(self.args.gateway + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (OSError, urllib.error.URLError):
            return None, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None

    def registration(self):
        a = self.args
        body = {
            "id": a.id,
            "host": a.host,
            "publicHost": a.public_host or a.host,
            "port": self.http_port,
            "wsPort": self.ws_port,
            "maxConnections": a.max_connections,
            "authKey": a.auth_key,
        }
        for field, value in (("service", a.service), ("group", a.group), ("weight", a.weight)):
            if value is not None:
                body[field] = value
        return body

    def register(self):
        status, answer = self.post("/register", self.registration())
        self.events.emit(ev="register", status=status, answer=answer)
        return status == 200

    def heartbeat(self):
        a = self.args
        status, answer = self.post("/heartbeat", {
            "serverId": a.id,
            "activeConnections": self.active,
            "cpuUsage": a.cpu,
            "ramUsage": a.ram_usage,
            "ramTotal": a.ram_total,
            "authKey": a.auth_key,
        })
        self.events.emit(ev="heartbeat", status=status, active=self.active)
        if status == 404:
            # The gateway forgot us (it thought we were dead): register again.
            self.register()

    def register_until_accepted(self):
        while not self.stop.is_set():
            if self.register():
                print("REGISTERED", flush=True)
                return
            self.stop.wait(0.1)

    def keep_alive(self):
        """The heartbeat thread: registration first, then heartbeats."""
        self.register_until_accepted()
        if self.args.no_heartbeat:
            return
        interval = self.args.heartbeat_interval / 1000.0
        while not self.stop.wait(interval):
            self.heartbeat()

    def unregister(self):
        body = {"serverId": self.args.id, "authKey": self.args.auth_key}
        status, _ = self.post("/unregister", body)
        self.events.emit(ev="unregister", status=status)

    # ---- WebSocket ------------------------------------------------------

    def describe(self, ws, conn):
        headers = {k: v for k, v in ws.request_headers.raw_items()
                   if k.lower().startswith("x-") or k.lower() in REPORTED_HEADERS}
        return {"server": self.args.id, "conn": conn, "path": ws.path, "headers": headers}

    async def handler(self, ws):
        self.conn_ids += 1
        conn = self.conn_ids
        self.active += 1
        self.events.emit(ev="open", conn=conn, path=ws.path,
                         migratedFrom=ws.request_headers.get("X-Wsgate-Migrated-From"))
        try:
            async for msg in ws:
                # Sequence numbers were answered by InOrderProtocol.
                if isinstance(msg, str):
                    if msg == "whoami":
                        await ws.send(json.dumps(self.describe(ws, conn)))
                        continue
                    if msg.startswith("close "):
                        parts = msg.split(" ", 2)
                        await ws.close(int(parts[1]), parts[2] if len(parts) > 2 else "")
                        break
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.active -= 1
            self.events.emit(ev="close", conn=conn, code=ws.close_code, reason=ws.close_reason)

    # ---- HTTP -----------------------------------------------------------

    def http_server(self):
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] == "/health":
                    body = json.dumps({"status": "ok", "id": backend.args.id,
                                       "activeConnections": backend.active}).encode()
                    self.send_response(200)
                else:
                    body = b'{"error": "not found"}'
                    self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.args.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.server_address[1]

    async def run(self):
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: done.done() or done.set_result(None))
        InOrderProtocol.backend = self
        server = await websockets.serve(
            self.handler, "127.0.0.1", self.args.ws_port, create_protocol=InOrderProtocol,
            ping_interval=None, compression="deflate" if self.args.deflate else None,
            max_size=None, backlog=1024)
        self.ws_port = server.sockets[0].getsockname()[1]
        self.http_port = self.http_server()
        print(f"PORTS {self.ws_port} {self.http_port}", flush=True)
        threading.Thread(target=self.keep_alive, daemon=True).start()
        await done
        self.stop.set()
        if self.args.unregister_on_exit:
            await loop.run_in_executor(None, self.unregister)
        server.close()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", required=True,
                   help="the gateway's HTTP port, e.g. http://127.0.0.1:8000")
    p.add_argument("--auth-key", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--host", default="127.0.0.1", help="the host the gateway dials")
    p.add_argument("--public-host", default=None)
    p.add_argument("--ws-port", type=int, default=0)
    p.add_argument("--port", type=int, default=0, help="HTTP port (GET /health)")
    p.add_argument("--max-connections", type=int, default=1000)
    p.add_argument("--service", default=None)
    p.add_argument("--group", default=None)
    p.add_argument("--weight", type=int, default=None)
    p.add_argument("--heartbeat-interval", type=int, default=1000, help="milliseconds")
    p.add_argument("--no-heartbeat", action="store_true", help="register, then never heartbeat")
    p.add_argument("--unregister-on-exit", action="store_true")
    p.add_argument("--cpu", type=float, default=12.5)
    p.add_argument("--ram-usage", type=float, default=256)
    p.add_argument("--ram-total", type=float, default=4096)
    p.add_argument("--seq-delay-ms", type=int, default=0, help="time each sequence answer takes")
    p.add_argument("--log-answers", action="store_true",
                   help="an event for every sequence answer sent")
    p.add_argument("--deflate", action="store_true", help="accept permessage-deflate")
    p.add_argument("--events", default=None)
    args = p.parse_args()
    asyncio.run(Backend(args).run())


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
