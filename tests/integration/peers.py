"""Scripted backends for the wsgate integration tests.

Run as a separate process by the tests (never imported by the gateway):

    /usr/bin/python3 peers.py MODE --events FILE [options]

The backend binds 127.0.0.1 port --port (default 0: any), prints "PORT <n>" on its first stdout
line, then serves until it is killed. Everything it observes is appended to
the events file as one JSON object per line, so that a test can wait for
"the backend saw close 4001" without sharing memory with it.

Modes:
  echo       echoes text and binary; "whoami" answers a JSON description of
             the request it was opened with; "emit N" sends N binary bytes
  reject     answers the upgrade with HTTP 403 and a body
  stream     on connect sends --total bytes in --chunk sized binary
             messages as fast as the socket takes them (progress file)
  close      closes with --code/--reason after the first message
  silent     accepts TCP and never answers (raw socket server)
  garbage    answers the upgrade with junk bytes (raw socket server)
  badaccept  answers 101 with a wrong Sec-WebSocket-Accept (raw socket)
  hangup     reads the upgrade request and closes the connection (raw socket)

Echo commands (text messages): "whoami"; "emit N" (N bytes, binary);
"emitfrag A B C" (one text message sent as the fragments A, B and C).
"""

import argparse
import asyncio
import http
import json
import os
import sys

import websockets

# Request headers the "whoami" answer always reports (absent: null).
WHOAMI_HEADERS = [
    "Host",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Real-IP",
    "Cookie",
    "Authorization",
    "Origin",
    "User-Agent",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
]

SUBPROTOCOLS = ["chat.v1", "superchat"]


class Events:
    """Append-only JSON-lines log of what the backend saw."""

    def __init__(self, path, name):
        self.name = name
        self.f = open(path, "a", buffering=1) if path else None

    def emit(self, **fields):
        if self.f:
            fields.setdefault("backend", self.name)
            self.f.write(json.dumps(fields) + "\n")


def describe(ws, name):
    h = ws.request_headers
    return {
        "backend": name,
        "path": ws.path,
        "headers": {k: (", ".join(h.get_all(k)) if k in h else None) for k in WHOAMI_HEADERS},
        "x_headers": {k: v for k, v in h.raw_items() if k.lower().startswith("x-")},
        "all": [[k, v] for k, v in h.raw_items()],
        "subprotocol": ws.subprotocol,
    }


async def serve_ws(args, handler, process_request=None):
    server = await websockets.serve(
        handler,
        "127.0.0.1",
        args.port,
        max_size=None,
        compression=None if args.no_deflate else "deflate",
        max_queue=None if args.mode == "echo" else 32,
        ping_interval=None,
        subprotocols=SUBPROTOCOLS,
        process_request=process_request,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    await asyncio.Future()


def ws_handlers(args, ev):
    name = args.name
    conn_ids = iter(range(1, 1 << 30))

    async def echo(ws):
        cid = next(conn_ids)
        ev.emit(ev="open", conn=cid, path=ws.path)
        try:
            async for msg in ws:
                if msg == "whoami":
                    await ws.send(json.dumps(describe(ws, name)))
                elif isinstance(msg, str) and msg.startswith("emit "):
                    await ws.send(b"e" * int(msg.split()[1]))
                elif isinstance(msg, str) and msg.startswith("emitfrag "):
                    await ws.send(msg.split()[1:])
                else:
                    await ws.send(msg)
        except websockets.ConnectionClosed:
            pass
        ev.emit(ev="close", conn=cid, code=ws.close_code, reason=ws.close_reason)

    async def close(ws):
        cid = next(conn_ids)
        ev.emit(ev="open", conn=cid, path=ws.path)
        try:
            await ws.recv()
            await ws.close(args.code, args.reason)
        except websockets.ConnectionClosed:
            pass
        ev.emit(ev="close", conn=cid, code=ws.close_code, reason=ws.close_reason)

    async def stream(ws):
        cid = next(conn_ids)
        ev.emit(ev="open", conn=cid, path=ws.path)
        chunk = os.urandom(args.chunk)
        sent = 0
        fd = os.open(args.progress, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while sent < args.total:
                await ws.send(chunk)
                sent += len(chunk)
                os.pwrite(fd, f"{sent:20d}\n".encode(), 0)
            ev.emit(ev="stream-done", conn=cid, sent=sent)
            await ws.wait_closed()
        except websockets.ConnectionClosed:
            pass
        finally:
            os.close(fd)
        ev.emit(ev="close", conn=cid, code=ws.close_code, reason=ws.close_reason, sent=sent)

    return {"echo": echo, "close": close, "stream": stream}


async def reject_request(path, headers):
    return (
        http.HTTPStatus.FORBIDDEN,
        [("Content-Type", "text/plain"), ("X-Backend-Says", "no")],
        b"backend refuses you\n",
    )


async def serve_raw(args, ev):
    """Servers that misbehave at the HTTP level: written on plain sockets
    because a WebSocket library would refuse to misbehave."""
    held = []

    async def on_conn(reader, writer):
        held.append(writer)
        ev.emit(ev="tcp-open")
        if args.mode == "silent":
            return
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except Exception:
            writer.close()
            return
        if args.mode == "hangup":
            writer.close()
            return
        if args.mode == "garbage":
            writer.write(b"\x00\x01\x02\xff this is not HTTP at all \xfe\r\n\r\n")
        else:
            key = b""
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"sec-websocket-key:"):
                    key = line.split(b":", 1)[1].strip()
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                b"dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            ev.emit(ev="key", key=key.decode())
        await writer.drain()

    server = await asyncio.start_server(on_conn, "127.0.0.1", args.port)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Future()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["echo", "reject", "stream", "close", "silent", "garbage", "badaccept",
                                      "hangup"])
    p.add_argument("--no-deflate", action="store_true", help="decline permessage-deflate")
    p.add_argument("--events", default=None)
    p.add_argument("--name", default="backend")
    p.add_argument("--code", type=int, default=4002)
    p.add_argument("--reason", default="later")
    p.add_argument("--total", type=int, default=200 * 1024 * 1024)
    p.add_argument("--chunk", type=int, default=64 * 1024)
    p.add_argument("--progress", default=os.devnull)
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = p.parse_args()
    ev = Events(args.events, args.name)
    if args.mode in ("silent", "garbage", "badaccept", "hangup"):
        await serve_raw(args, ev)
    elif args.mode == "reject":
        await serve_ws(args, ws_handlers(args, ev)["echo"], reject_request)
    else:
        await serve_ws(args, ws_handlers(args, ev)[args.mode])


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
