"""A todo list over HTTP (in memory)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer


def make_server(host: str, port: int) -> HTTPServer:
    todos: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/todos":
                with lock:
                    self._send(200, list(todos))
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == ["todos"]:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    body = None
                title = body.get("title") if isinstance(body, dict) else None
                if not isinstance(title, str) or not title:
                    self._send(400, {"error": "a title is required"})
                    return
                with lock:
                    todo = {"id": len(todos) + 1, "title": title, "done": False}
                    todos.append(todo)
                self._send(201, todo)
            elif len(parts) == 3 and parts[0] == "todos" and parts[2] == "done":
                with lock:
                    found = [t for t in todos if str(t["id"]) == parts[1]]
                    if found:
                        found[0]["done"] = True
                if found:
                    self._send(200, found[0])
                else:
                    self._send(404, {"error": "not found"})
            else:
                self._send(404, {"error": "not found"})

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
