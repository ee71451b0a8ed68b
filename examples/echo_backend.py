#!/usr/bin/env python3
"""A WebSocket echo backend to try wsgate with.

Echoes every text and binary message back on the same connection. Run it
with Debian's python3 (it needs python3-websockets):

    /usr/bin/python3 examples/echo_backend.py --port 3001
"""
import argparse
import asyncio
import logging

import websockets


async def echo(ws, path):
    async for message in ws:
        await ws.send(message)


async def main(host, port):
    async with websockets.serve(echo, host, port, max_size=None, ping_interval=None):
        logging.info("echo backend listening on ws://%s:%d", host, port)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s echo %(message)s")
    try:
        asyncio.run(main(args.host, args.port))
    except KeyboardInterrupt:
        pass
