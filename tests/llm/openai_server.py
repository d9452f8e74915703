"""A small OpenAI-compatible chat-completions server on 127.0.0.1, started by a test.

Each instance answers from a script of behaviours, one per request (the last repeats):
``("ok", arguments)`` answers with a tool call of the requested output tool carrying
``arguments`` (a dict); ``("status", 500)`` answers that HTTP status; ``("sleep", s)``
waits ``s`` seconds before answering (a timeout for a client with a shorter one);
``("garbage", text)`` answers 200 with a body that is not a completion; ``("echo", status)``
answers ``status`` with an error body that echoes the request's ``Authorization`` header and
lists its headers, as some providers do (a 401 "Incorrect API key provided: ...", a 500).
A request that asks to stream (``"stream": true``) gets an ``ok`` answer as server-sent
events, the tool call's arguments a few characters a chunk, ``pause`` seconds apart.
A ``GET /models`` answers the current behaviour's status, or a list of one model.
The requests it received (path, headers, JSON body) are kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Behaviour = tuple[str, Any]


class OpenAIStub:
    def __init__(self, script: list[Behaviour], *, pause: float = 0.0) -> None:
        self.script = script
        self.pause = pause
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                kind, value = stub.script[min(len(stub.requests) - 1, len(stub.script) - 1)]
                if kind == "sleep":
                    time.sleep(value)
                    kind, value = "ok", {}
                if kind == "status":
                    self._send(value, {"error": {"message": "scripted failure"}})
                elif kind == "echo":
                    key = self.headers.get("authorization", "").removeprefix("Bearer ")
                    message = f"Incorrect API key provided: {key}"
                    headers = dict(self.headers.items())
                    self._send(value, {"error": {"message": message, "headers": headers}})
                elif kind == "garbage":
                    self._send_raw(200, value.encode())
                elif body.get("stream"):
                    self._stream(completion(body, value))
                else:
                    self._send(200, completion(body, value))

            def do_GET(self) -> None:
                """``/models`` (a cheap call that needs the key): the script's current
                status when it fails, else a list of one model."""
                stub.requests.append({"path": self.path, "headers": dict(self.headers.items())})
                kind, value = stub.script[min(len(stub.requests) - 1, len(stub.script) - 1)]
                if kind in ("status", "echo"):
                    self._send(value, {"error": {"message": "scripted failure"}})
                else:
                    model = {"id": "stub", "object": "model", "created": 0, "owned_by": "stub"}
                    self._send(200, {"object": "list", "data": [model]})

            def _stream(self, answer: dict[str, Any]) -> None:
                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    for chunk in chunks(answer):
                        time.sleep(stub.pause)
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                self._send_raw(status, json.dumps(payload).encode())

            def _send_raw(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> OpenAIStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def completion(request: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    tools = request.get("tools") or []
    message: dict[str, Any]
    if tools:
        name = tools[0]["function"]["name"]
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            ],
        }
    else:
        message = {"role": "assistant", "content": json.dumps(arguments)}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "stub"),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
    }


def chunks(answer: dict[str, Any], size: int = 4) -> list[dict[str, Any]]:
    """``answer`` (a completion) as the chunks of a streamed one."""
    message = answer["choices"][0]["message"]
    head = {k: answer[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return head | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out: list[dict[str, Any]] = []
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        args = call["function"]["arguments"]
        first = {"id": call["id"], "type": "function"}
        out.append(
            chunk(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"index": 0, **first, "function": {"name": call["function"]["name"]}}
                    ],
                }
            )
        )
        for i in range(0, len(args), size):
            piece = {"index": 0, "function": {"arguments": args[i : i + size]}}
            out.append(chunk({"tool_calls": [piece]}))
    else:
        text = message["content"]
        out += [chunk({"content": text[i : i + size]}) for i in range(0, len(text), size)]
    out.append(chunk({}, answer["choices"][0]["finish_reason"]))
    out.append(head | {"choices": [], "usage": answer["usage"]})
    return out
