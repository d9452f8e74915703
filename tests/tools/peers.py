"""Local peers the tool tests start: an HTTP server on 127.0.0.1 whose routes a test sets
and which records every request it receives (with answers like GitHub's REST API and
SearXNG's JSON API), and an SMTP server (aiosmtpd) that keeps what it receives."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port

PASSWORD = "s3cret-smtp-password"
JSON = {"Content-Type": "application/json"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (a slow peer)."""
    length: bool = True
    """Send Content-Length; without it the body ends when the connection closes."""


Route = Callable[[Request], Reply]


class Peer:
    """A threaded HTTP server; ``routes`` maps "METHOD /path" to a function of the request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                peer.requests.append(request)
                route = peer.routes.get(f"{self.command} {parts.path}")
                reply = route(request) if route else Reply(404, b"not found")
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body.encode() if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.length:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout under test)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, key: str, reply: Reply | Route) -> None:
        self.routes[key] = reply if callable(reply) else (lambda _request: reply)

    def __enter__(self) -> Peer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def received(peer: Peer, key: str) -> list[Request]:
    """The requests ``peer`` received for "METHOD /path"."""
    method, path = key.split(" ", 1)
    return [r for r in peer.requests if r.method == method and r.path == path]


def github_api(peer: Peer, repository: str = "acme/todo") -> None:
    """Answers like GitHub's REST API for the calls the GitHub tool makes: pull request
    #12 created, issue #7 read, commented on and closed."""
    pulls = f"https://gh.test/{repository}/pull/12"
    peer.route(
        f"POST /repos/{repository}/pulls",
        Reply(201, json.dumps({"number": 12, "html_url": pulls}), JSON),
    )
    peer.route(
        f"POST /repos/{repository}/issues/7/comments",
        Reply(
            201,
            json.dumps({"id": 1, "html_url": f"https://gh.test/{repository}/issues/7#c1"}),
            JSON,
        ),
    )
    issue = {
        "number": 7,
        "title": "Add a todo CLI",
        "body": "It should store items in todo.json.",
        "html_url": f"https://gh.test/{repository}/issues/7",
        "state": "open",
    }
    peer.route(f"GET /repos/{repository}/issues/7", Reply(200, json.dumps(issue), JSON))
    peer.route(
        f"PATCH /repos/{repository}/issues/7",
        Reply(200, json.dumps({**issue, "state": "closed"}), JSON),
    )


def searxng(peer: Peer, *paths: str, host: str = "localhost") -> None:
    """Answers ``GET /search`` like SearXNG's JSON API, with one result per page of
    ``paths`` on ``peer`` (named by ``host``, which a test lets the fetch tool reach)."""
    results = [
        {"url": f"http://{host}:{peer.port}{p}", "title": p, "content": f"about {p}"} for p in paths
    ]
    peer.route("GET /search", Reply(200, json.dumps({"query": "q", "results": results}), JSON))


@dataclass
class Inbox:
    """What the SMTP server received."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append(data.login.decode())
        return AuthResult(success=data.password.decode() == PASSWORD, handled=False)


@contextmanager
def smtp_server(**options: Any) -> Iterator[tuple[Inbox, int]]:
    """An aiosmtpd server on 127.0.0.1 (a login with ``PASSWORD`` accepted without TLS
    unless ``options`` say otherwise); yields its inbox and port."""
    inbox = Inbox()
    port = free_port()
    options = {"authenticator": inbox.authenticate, "auth_require_tls": False, **options}
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
