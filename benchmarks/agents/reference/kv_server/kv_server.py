"""A key-value store over HTTP (in memory)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer


def make_server(host: str, port: int) -> HTTPServer:
    values: dict[str, str] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes = b"", kind: str = "text/plain") -> None:
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _name(self) -> str | None:
            parts = self.path.split("?")[0].strip("/").split("/")
            return parts[1] if len(parts) == 2 and parts[0] == "keys" and parts[1] else None

        def do_GET(self) -> None:
            if self.path.split("?")[0].rstrip("/") == "/keys":
                with lock:
                    names = sorted(values)
                self._send(200, json.dumps(names).encode(), "application/json")
                return
            name = self._name()
            with lock:
                value = values.get(name) if name else None
            if value is None:
                self._send(404, b"not found")
            else:
                self._send(200, value.encode())

        def do_PUT(self) -> None:
            name = self._name()
            if name is None:
                self._send(404, b"not found")
                return
            length = int(self.headers.get("Content-Length") or 0)
            with lock:
                values[name] = self.rfile.read(length).decode()
            self._send(204)

        def do_DELETE(self) -> None:
            name = self._name()
            with lock:
                existed = name is not None and values.pop(name, None) is not None
            self._send(204) if existed else self._send(404, b"not found")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
