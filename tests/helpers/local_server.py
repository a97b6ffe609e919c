"""An HTTP server on 127.0.0.1 for download tests: serves a folder, can cut a file short."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path


class Handler(http.server.SimpleHTTPRequestHandler):
    truncate: dict[str, int] = {}  # file name -> bytes actually sent (Content-Length says the full size)

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        name = self.path.lstrip("/")
        path = Path(self.directory) / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: self.truncate.get(name, len(data))])


class LocalServer:
    """An HTTP server on 127.0.0.1 serving ``root``; ``stop()`` shuts it down (the port then refuses)."""

    def __init__(self, root: Path):
        handler = lambda *a, **k: Handler(*a, directory=str(root), **k)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
