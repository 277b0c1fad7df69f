"""Real HTTP servers in a thread, standing in for the outside world: a request handler that
logs nothing and answers in one call, and a server started on a free port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that writes no access log to the test output."""

    def log_message(self, *args: object) -> None:
        pass

    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer with ``status`` and ``body``, its length and type in the headers."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def reply_json(
        self, status: int, document: Any, content_type: str = "application/json"
    ) -> None:
        self.reply(status, json.dumps(document).encode(), content_type)


def serve(
    handler: type[BaseHTTPRequestHandler],
    server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer,
    *,
    poll_interval: float = 0.5,
) -> tuple[ThreadingHTTPServer, str]:
    """``handler`` answering on a free port of 127.0.0.1 in a daemon thread: the server (to
    shut down) and its URL."""
    server = server_class(("127.0.0.1", 0), handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
    ).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
