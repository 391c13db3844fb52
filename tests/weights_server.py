"""A real HTTP server on 127.0.0.1 for the download tests: serves bytes the tests put at an address's path,
answers Range requests, and can cut a transfer half-way or trickle it (for Cancel)."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest


class Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    cut_once: set[str]  # paths whose next GET stops half-way (the connection drops)
    slow: set[str]  # paths sent 4 KB at a time, 20 ms apart
    trickle: set[str]  # paths sent a byte at a time, 50 ms apart (a hostile mirror)
    unsized: set[str]  # paths sent without a Content-Length (the end of the connection ends them)
    ranges: list[tuple[str, str]]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> bytes | None:
        body = self.server.files.get(urllib.parse.urlparse(self.path).path)
        if body is None:
            self.send_error(404, "Not Found")
        return body

    def do_GET(self) -> None:
        body = self._body()
        if body is None:
            return
        start = 0
        if "Range" in self.headers:
            self.server.ranges.append((self.path, self.headers["Range"]))
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)  # nothing left: what real servers answer
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        if self.path not in self.server.unsized:
            self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in self.server.trickle:
            try:
                for offset in range(start, len(body)):
                    self.wfile.write(body[offset:offset + 1])
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:  # the client gave up
                pass
            return
        if self.path in self.server.cut_once:
            self.server.cut_once.discard(self.path)
            self.wfile.write(body[start:start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path in self.server.slow:
            for offset in range(start, len(body), 4096):
                self.wfile.write(body[offset:offset + 4096])
                self.wfile.flush()
                time.sleep(0.02)
            return
        self.wfile.write(body[start:])


@contextlib.contextmanager
def serving(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """The server, with OCCNET_WEIGHTS_MIRROR pointing every download at it."""
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.files, httpd.cut_once, httpd.slow, httpd.ranges = {}, set(), set(), []
    httpd.trickle, httpd.unsized = set(), set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OCCNET_WEIGHTS_MIRROR", f"http://127.0.0.1:{httpd.server_address[1]}")
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
