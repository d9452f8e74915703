"""A URL shortener whose links are kept in a JSON file."""

import json
import secrets
import string
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path

ALPHABET = string.ascii_letters + string.digits


def make_server(host: str, port: int, db_path: str) -> HTTPServer:
    db = Path(db_path)
    lock = threading.Lock()

    def load() -> dict[str, str]:
        return json.loads(db.read_text()) if db.exists() else {}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path != "/shorten":
                self._send(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length", 0))
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = {}
            url = body.get("url") if isinstance(body, dict) else None
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                self._send(400, {"error": "give a url starting with http:// or https://"})
                return
            with lock:
                links = load()
                code = secrets.choice(ALPHABET) + "".join(
                    secrets.choice(ALPHABET) for _ in range(5)
                )
                while code in links:
                    code = "".join(secrets.choice(ALPHABET) for _ in range(6))
                links[code] = url
                db.write_text(json.dumps(links))
            self._send(201, {"code": code, "url": url})

        def do_GET(self) -> None:
            url = load().get(self.path.lstrip("/"))
            if url is None:
                self._send(404, {"error": "not found"})
                return
            self.send_response(302)
            self.send_header("Location", url)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
