#!/usr/bin/env python3
"""An HTTP backend to try wsgate's /api and /sse routes with.

Answers every request with what it received (method, path, headers, body
size) as JSON, and /events with Server-Sent Events, one a second:

    /usr/bin/python3 examples/http_backend.py --port 3101 --name users-1
"""
import argparse
import http.server
import json
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "backend"

    def log_message(self, *args):
        pass

    def _body_size(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            n = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return n
                n += len(self.rfile.read(size))
                self.rfile.readline()
        return len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _events(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.close_connection = True
        for i in range(3):
            self.wfile.write(f"data: {self.name} event {i}\n\n".encode())
            self.wfile.flush()
            time.sleep(1)

    def _answer(self):
        if self.path.startswith("/events"):
            self._events()
            return
        body = json.dumps({"backend": self.name, "method": self.command, "path": self.path,
                           "headers": dict(self.headers.items()),
                           "bodyBytes": self._body_size()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3101)
    parser.add_argument("--name", default="backend")
    args = parser.parse_args()
    Handler.name = args.name
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()
