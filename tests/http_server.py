"""A local HTTP file server for the download tests (the ``server`` fixture in conftest.py).

Serves ``files`` by name (the last component of the request path) on 127.0.0.1 with HTTP Range
support (``Range: bytes=N-`` answered 206 with a Content-Range), and logs every request: its path
and headers, header names lower-cased. A name not in ``files`` is a 404. ``faults`` are consumed one
per request (a 404 included):

- ``"500"``: answer HTTP 500;
- ``"ignore-range"``: answer 200 with the whole file even when asked for a range;
- ``("short", n)``: a complete, well-formed response that holds only the first ``n`` bytes
  (Content-Length says ``n``);
- ``("drop", n)``: promise the whole rest in Content-Length, send ``n`` bytes and hang up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Server:
    """What a test sets (``files``, ``faults``) and reads (``base_url``, ``requests``)."""

    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    faults: list = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)


def _handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def do_GET(self) -> None:
            state.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            fault = state.faults.pop(0) if state.faults else None
            body = state.files.get(self.path.rsplit("/", 1)[-1])
            if fault == "500":
                return self._send(500, b"try later")
            if body is None:
                return self._send(404, b"no such file")
            start, status = 0, 200
            ranged = self.headers.get("Range")
            if ranged and fault != "ignore-range":
                start, status = int(ranged.removeprefix("bytes=").split("-")[0]), 206
            chunk = body[start:]
            self.send_response(status)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            if isinstance(fault, tuple) and fault[0] == "short":  # a complete response, but too short
                chunk = chunk[: fault[1]]
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            if isinstance(fault, tuple) and fault[0] == "drop":  # promised all, sends some, hangs up
                self.wfile.write(chunk[: fault[1]])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def serve(path: str = "/") -> Iterator[Server]:
    """A running server; its ``base_url`` is ``http://127.0.0.1:PORT`` + ``path`` (which ends in /)."""
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}{path}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
