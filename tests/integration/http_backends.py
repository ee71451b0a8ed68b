"""HTTP backends for the service-routing tests: a real http.server in a
thread of the test process, answering by path, recording what it got.

Paths (after the gateway stripped /api/:service or /sse/:service):
  /echo...            JSON: backend, method, path, headers, body length and sha256
  /chunked            the answer in three chunks
  /close              an answer without length, ended by the close
  /big?n=N            N bytes with Content-Length
  /hop                end-to-end and hop-by-hop headers in the answer
  /slow?ms=M          waits M ms, then answers
  /die                announces 1000 bytes, sends 100, closes
  /die-chunked        one chunk, then closes without the last chunk
  /garbage            a line that is not HTTP, then a reset
  /events?n=N&ms=M    Server-Sent Events: N events M ms apart (n=0: until the
                      client goes; `stream_closed` is set then)
A request body is read as it comes (Content-Length or chunked), pausing
`read_delay` seconds per 64 KiB, so a slow backend can be made.
"""
import hashlib
import http.server
import json
import socket
import threading
import time
import urllib.parse


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        h = hashlib.sha256()
        n = 0
        delay = self.server.owner.read_delay
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    part = self.rfile.read(min(left, 65536))
                    h.update(part)
                    n += len(part)
                    left -= len(part)
                    if delay:
                        time.sleep(delay)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                part = self.rfile.read(min(left, 65536))
                if not part:
                    break
                h.update(part)
                n += len(part)
                left -= len(part)
                if delay:
                    time.sleep(delay)
        return n, h.hexdigest()

    def _send(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the gateway left: so does the client

    def _route(self):
        owner = self.server.owner
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        n, digest = self._body()
        seen = {
            "backend": owner.name,
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": n,
            "body_sha256": digest,
        }
        owner.requests.append(seen)
        route = url.path
        if route.startswith("/echo") or route == "/":
            self._send(200, json.dumps(seen).encode())
        elif route == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one,", b"two,", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif route == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the close")
            self.close_connection = True
        elif route == "/big":
            size = int(query["n"][0])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"x" * 65536
            while size:
                self.wfile.write(block[:min(size, len(block))])
                size -= min(size, len(block))
                owner.sent += min(size, len(block))
        elif route == "/hop":
            self._send(200, b"{}", extra=[("Connection", "X-Secret-Hop"), ("X-Secret-Hop", "1"),
                                          ("Keep-Alive", "timeout=5"),
                                          ("Proxy-Authenticate", "Basic"), ("X-End", "kept")])
        elif route == "/slow":
            time.sleep(int(query["ms"][0]) / 1000)
            self._send(200, b"{\"slow\":true}")
        elif route == "/status":
            self._send(int(query["code"][0]), b"{\"status\":true}")
        elif route == "/die":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"y" * 100)
            self.close_connection = True
        elif route == "/die-chunked":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            self.close_connection = True
        elif route == "/garbage":
            self.wfile.write(b"THIS IS NOT HTTP AT ALL\r\n\r\n")
            self.wfile.flush()
            self._abort()
        elif route == "/events":
            self._events(int(query.get("n", ["5"])[0]), int(query.get("ms", ["300"])[0]))
        else:
            self._send(404, b"{\"error\":\"no such path on the backend\"}")

    def _events(self, count, ms):
        owner = self.server.owner
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        i = 0
        try:
            while count == 0 or i < count:
                self.wfile.write(b"id: %d\ndata: event %d\n\n" % (i, i))
                self.wfile.flush()
                i += 1
                time.sleep(ms / 1000)
        except OSError:
            owner.stream_closed.set()

    def _abort(self):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class HttpBackend:
    def __init__(self, name, read_delay=0.0):
        self.name = name
        self.read_delay = read_delay
        self.requests = []
        self.sent = 0  # bytes of /big answers written so far
        self.stream_closed = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.owner = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
