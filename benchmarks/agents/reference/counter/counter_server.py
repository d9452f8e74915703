"""Named counters over HTTP (in memory)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer


def make_server(host: str, port: int) -> HTTPServer:
    counters: dict[str, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _name(self) -> str | None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) == 2 and parts[0] == "counters" and parts[1]:
                return parts[1]
            return None

        def do_GET(self) -> None:
            if self.path.split("?")[0].rstrip("/") == "/counters":
                with lock:
                    self._send(200, dict(counters))
                return
            name = self._name()
            if name is None:
                self._send(404, {"error": "not found"})
                return
            with lock:
                self._send(200, {"name": name, "value": counters.get(name, 0)})

        def do_POST(self) -> None:
            name = self._name()
            if name is None:
                self._send(404, {"error": "not found"})
                return
            with lock:
                counters[name] = counters.get(name, 0) + 1
                value = counters[name]
            self._send(200, {"name": name, "value": value})

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
