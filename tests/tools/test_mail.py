"""E-mail notifications received by a real SMTP server (aiosmtpd) started in the test."""

from __future__ import annotations

import io
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from forgeline.core.events import EmailSent
from forgeline.core.task import TaskState
from forgeline.errors import ConfigError
from forgeline.tools.calls import ToolCalls
from forgeline.tools.config import EmailConfig
from forgeline.tools.mail import Mailer, MailError, outcome_of
from forgeline.tools.report.model import TaskReport, load_report
from tests.conftest import free_port
from tests.tools.conftest import FinishedTask
from tests.tools.peers import PASSWORD, Inbox, smtp_server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


@pytest.fixture
def smtp(
    request: pytest.FixtureRequest, certificate: tuple[Path, Path]
) -> Iterator[tuple[Inbox, int]]:
    """An aiosmtpd server: ``plain`` (login without TLS), ``starttls`` or ``ssl``."""
    mode = getattr(request, "param", "plain")
    options: dict[str, Any] = {}
    if mode == "starttls":
        options = {
            "tls_context": server_context(certificate),
            "require_starttls": True,
            "auth_require_tls": True,
        }
    elif mode == "ssl":  # TLS from the first byte; aiosmtpd does not see it
        options = {"ssl_context": server_context(certificate)}
    with smtp_server(**options) as running:
        yield running


def settings(port: int, **values: Any) -> EmailConfig:
    return EmailConfig.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "username": "forgeline",
            "password": PASSWORD,
            "sender": "forgeline@example.org",
            "timeout": 5,
            "notify": {
                "completed": ["lead@example.org", "ops@example.org"],
                "failed": ["oncall@example.org"],
            },
            **values,
        }
    )


async def test_completed_task_mail_with_pdf_report(
    finished_task: FinishedTask, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    report = await load_report(finished_task.store, finished_task.task_id, finished_task.workspaces)
    calls = ToolCalls()

    await Mailer(settings(port), recorder=calls).notify(report)

    [(sender, recipients, message)] = inbox.messages
    assert sender == "forgeline@example.org"
    assert recipients == ["lead@example.org", "ops@example.org"]
    assert inbox.logins == ["forgeline"]
    task = finished_task.task_id
    assert message["Subject"] == (
        f"[forgeline] task {task} completed: build a todo CLI that stores items in todo.json"
    )
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    body = text.get_content()
    assert "build a todo CLI that stores items in todo.json" in body
    assert report.test_summary() in body and report.usage_summary() in body
    assert "todo.py (+" in body
    assert report.test_summary() in html.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == f"forgeline-{task}.pdf"
    pdf = PdfReader(io.BytesIO(attachment.get_content()))
    assert "build a todo CLI" in " ".join(pdf.pages[0].extract_text().split())
    [record] = calls.records
    assert record == EmailSent(
        outcome="completed",
        recipients=("lead@example.org", "ops@example.org"),
        subject=message["Subject"],
        attachments=(f"forgeline-{task}.pdf",),
    )
    assert PASSWORD not in record.model_dump_json()


@pytest.mark.parametrize("smtp", ["starttls", "ssl"], indirect=True)
async def test_tls_modes(
    smtp: tuple[Inbox, int], certificate: tuple[Path, Path], request: pytest.FixtureRequest
) -> None:
    inbox, port = smtp
    mode = request.node.callspec.params["smtp"]
    config = settings(port, security=mode, ca_file=str(certificate[0]), attach_report=False)
    await Mailer(config).notify(failed_report())
    [(_, recipients, message)] = inbox.messages
    assert recipients == ["oncall@example.org"]
    assert "failed" in message["Subject"]
    assert "Reason: tests kept failing" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert list(message.iter_attachments()) == []


def failed_report() -> TaskReport:
    state = TaskState(
        task_id="t9",
        status="failed",
        request="add a /health endpoint",
        branch="forgeline/t9",
        failure="tests kept failing",
    )
    return TaskReport(state=state, created_at=None, finished_at=None)


async def test_server_without_starttls(smtp: tuple[Inbox, int]) -> None:
    _, port = smtp
    # the plain server does not offer STARTTLS at all
    with pytest.raises(MailError, match=r"STARTTLS extension not supported.*\[email\] security"):
        await Mailer(settings(port, security="starttls")).notify(failed_report())


@pytest.mark.parametrize("smtp", ["starttls"], indirect=True)
async def test_certificate_not_trusted(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    with pytest.raises(MailError, match=r"TLS failed.*ca_file"):
        await Mailer(settings(port, security="starttls")).notify(failed_report())
    assert inbox.messages == []


async def test_wrong_password(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    calls = ToolCalls()
    with pytest.raises(MailError, match="refused the login of 'forgeline'"):
        await Mailer(settings(port, password="wrong"), recorder=calls).notify(failed_report())
    assert inbox.messages == []
    [record] = calls.records
    assert isinstance(record, EmailSent) and "refused the login" in (record.error or "")
    assert "wrong" not in record.model_dump_json()


async def test_password_from_the_environment(
    smtp: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    config = settings(port, password=None, password_env="TEST_SMTP_PASSWORD")
    await Mailer(config).notify(failed_report())
    assert len(inbox.messages) == 1


async def test_unreachable_and_silent_servers() -> None:
    with pytest.raises(MailError, match="could not be reached"):
        await Mailer(settings(free_port())).notify(failed_report())
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never greets
        port = silent.getsockname()[1]
        with pytest.raises(MailError, match="did not answer within 1s"):
            await Mailer(settings(port, timeout=1)).notify(failed_report())


async def test_who_gets_what(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    mailer = Mailer(settings(port))
    running = TaskReport(
        state=TaskState(task_id="t1", status="running"), created_at=None, finished_at=None
    )
    asking = TaskReport(
        state=TaskState(task_id="t2", status="needs_clarification"),
        created_at=None,
        finished_at=None,
    )
    assert await mailer.notify(running) is None  # no outcome yet
    assert await mailer.notify(asking) is None  # nobody configured for questions
    assert await Mailer(EmailConfig()).notify(failed_report()) is None  # no host: off
    assert inbox.messages == []
    assert outcome_of(TaskState(task_id="t", status="awaiting_approval")) == "awaiting_approval"
    assert outcome_of(TaskState(task_id="t", status="cancelled")) is None


async def test_configured_templates_replace_the_built_in_ones(
    smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    inbox, port = smtp
    (tmp_path / "email.txt.j2").write_text(
        "{{ headline | upper }}: {{ s.request }} ({{ outcome }}, {{ pull_request or 'no PR' }})\n"
    )
    config = settings(port, templates=str(tmp_path), attach_report=False)

    await Mailer(config).notify(failed_report(), outcome="failed", pull_request=None)

    [(_, recipients, message)] = inbox.messages
    assert recipients == ["oncall@example.org"]
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().strip() == "FAILED: add a /health endpoint (failed, no PR)"
    assert "tests kept failing" in html.get_content()  # the built-in HTML template
    (tmp_path / "email.txt.j2").write_text("{{ s.request | no_such_filter }}\n")
    with pytest.raises(ConfigError, match=r"\[email\] templates .* do not render"):
        await Mailer(config).notify(failed_report())
