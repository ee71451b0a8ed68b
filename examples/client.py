#!/usr/bin/env python3
"""Talk to a WebSocket server (wsgate, say) from the terminal.

Sends each line typed (or the --send messages) as a text message and prints
every message that comes back. Needs Debian's python3-websockets:

    /usr/bin/python3 examples/client.py ws://127.0.0.1:9000/?clientId=demo
    /usr/bin/python3 examples/client.py ws://127.0.0.1:9000/ --send hello --send world
"""
import argparse
import asyncio
import sys

import websockets


async def run(url, messages):
    async with websockets.connect(url, max_size=None) as ws:
        print(f"connected to {url}", file=sys.stderr)
        if messages:
            for text in messages:
                await ws.send(text)
                print(await ws.recv())
            return
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            await ws.send(line.rstrip("\n"))
            print(await ws.recv())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--send", action="append", help="message to send (repeatable)")
    args = parser.parse_args()
    try:
        asyncio.run(run(args.url, args.send))
    except (KeyboardInterrupt, websockets.ConnectionClosed) as e:
        print(f"closed: {e}", file=sys.stderr)
