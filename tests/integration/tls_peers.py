"""peers.py's backends behind TLS: the same modes, served as wss://.

    /usr/bin/python3 tls_peers.py --cert CERT --key KEY MODE [peers.py options]

Every WebSocket server peers.py starts gets an SSL context with CERT and
KEY (the raw-socket modes are not wrapped: they are about HTTP, not TLS).
"""

import argparse
import asyncio
import functools
import ssl
import sys

import websockets

import peers


def main():
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    ours, rest = p.parse_known_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ours.cert, ours.key)
    # peers.py looks websockets.serve up at call time.
    websockets.serve = functools.partial(websockets.serve, ssl=ctx)
    sys.argv = [sys.argv[0], *rest]
    try:
        asyncio.run(peers.main())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
