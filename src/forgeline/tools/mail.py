"""E-mail notifications of task outcomes, over SMTP (the standard library's ``smtplib``).

``Mailer.notify(report)`` tells the addresses configured for the task's outcome
(``[email.notify]``: completed, failed, needs_clarification, awaiting_approval) with a
message from two Jinja2 templates (plain text and HTML, ``tools/templates/email.*.j2``)
and the PDF report attached. Connections use STARTTLS, implicit TLS (``ssl``) or neither
(``none``, for a relay on the same host), log in when ``username`` is set, and verify the
server's certificate (``ca_file`` for a private CA). The password comes from
``password`` or the variable ``password_env`` and is never recorded or logged.

Every message, sent or failed, is handed to the recorder as a ``tool.email`` event.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from jinja2 import TemplateError

from forgeline.core.events import EmailSent
from forgeline.core.task import TaskState
from forgeline.errors import ConfigError, ForgelineError
from forgeline.observability.tracing import traced
from forgeline.tools.calls import Recorder, ignore
from forgeline.tools.config import EmailConfig, Outcome
from forgeline.tools.report.html import templates
from forgeline.tools.report.model import TaskReport
from forgeline.tools.report.pdf import render_pdf

__all__ = ["MailError", "Mailer", "compose", "outcome_of"]

HEADLINES: dict[Outcome, str] = {
    "completed": "completed",
    "failed": "failed",
    "needs_clarification": "needs your answer",
    "awaiting_approval": "paused by its budget",
}


class MailError(ForgelineError):
    """A notification could not be sent; the message says what the server did."""


def outcome_of(state: TaskState) -> Outcome | None:
    """The outcome a task's status is worth a notification for, if any."""
    match state.status:
        case "completed" | "failed" | "needs_clarification" | "awaiting_approval":
            return state.status
        case _:
            return None


def compose(
    report: TaskReport,
    outcome: Outcome,
    *,
    sender: str,
    recipients: tuple[str, ...],
    pdf: bytes | None = None,
    pull_request: str | None = None,
    template_dir: str | None = None,
) -> EmailMessage:
    """The message for ``outcome`` from the templates (``template_dir``'s first); the
    templates see the report (``r``), its state (``s``), ``outcome``, ``headline``,
    ``subject``, ``question``, ``pull_request`` and ``attached``."""
    state = report.state
    headline = HEADLINES[outcome]
    request = " ".join(state.request.split())
    short = request if len(request) <= 60 else request[:57] + "..."
    subject = f"[forgeline] task {state.task_id} {headline}: {short}"
    questions = [
        s.item.description or s.item.title
        for s in state.items.values()
        if s.status == "needs_clarification"
    ]
    attached = f"forgeline-{state.task_id}.pdf" if pdf is not None else ""
    values = {
        "r": report,
        "s": state,
        "outcome": outcome,
        "headline": headline,
        "subject": subject,
        "question": questions[0] if questions else "",
        "attached": attached,
        "pull_request": pull_request or "",
    }
    env = templates("forgeline.tools", template_dir)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Message-ID"] = make_msgid(domain="forgeline")
    message.set_content(env.get_template("email.txt.j2").render(values))
    message.add_alternative(env.get_template("email.html.j2").render(values), subtype="html")
    if pdf is not None:
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename=attached)
    return message


class Mailer:
    """Sends notifications with the ``[email]`` settings."""

    def __init__(self, config: EmailConfig, *, recorder: Recorder = ignore) -> None:
        self.config = config
        self.recorder = recorder

    @property
    def enabled(self) -> bool:
        return self.config.host is not None

    @traced("email")
    async def notify(
        self,
        report: TaskReport,
        *,
        outcome: Outcome | None = None,
        pull_request: str | None = None,
    ) -> EmailMessage | None:
        """Tell the recipients of ``outcome`` (default: the one the task's status is
        worth); None when nobody is to be told. ``pull_request``: its URL, for the text."""
        outcome = outcome or outcome_of(report.state)
        if outcome is None or not self.enabled:
            return None
        recipients = self.config.notify.recipients(outcome)
        if not recipients:
            return None
        pdf = await asyncio.to_thread(render_pdf, report) if self.config.attach_report else None
        try:
            message = compose(
                report,
                outcome,
                sender=self.config.sender,
                recipients=recipients,
                pdf=pdf,
                pull_request=pull_request,
                template_dir=self.config.templates,
            )
        except TemplateError as exc:
            raise ConfigError(
                f"the e-mail templates in [email] templates ({self.config.templates}) do not "
                f"render: {exc}"
            ) from None
        attachments = tuple(part.get_filename() or "" for part in message.iter_attachments())
        record = EmailSent(
            outcome=outcome,
            recipients=recipients,
            subject=str(message["Subject"]),
            attachments=attachments,
        )
        try:
            await asyncio.to_thread(self._send, message, recipients)
        except MailError as exc:
            self.recorder(record.model_copy(update={"error": str(exc)}))
            raise
        self.recorder(record)
        return message

    def _password(self) -> str | None:
        if self.config.password is not None:
            return self.config.password.get_secret_value()
        if self.config.password_env:
            value = os.environ.get(self.config.password_env)
            if value is None:
                raise ConfigError(
                    f"[email] password_env names {self.config.password_env}, which is not set"
                )
            return value
        return None

    def _send(self, message: EmailMessage, recipients: tuple[str, ...]) -> None:
        config = self.config
        if config.host is None:
            raise ConfigError("[email] host is not set: no SMTP server to send through")
        where = f"SMTP server {config.host}:{config.port}"
        context = ssl.create_default_context(cafile=config.ca_file)
        try:
            smtp: smtplib.SMTP
            if config.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    config.host, config.port, timeout=config.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            with smtp:
                if config.security == "starttls":
                    smtp.starttls(context=context)
                if config.username:
                    smtp.login(config.username, self._password() or "")
                refused = smtp.send_message(message, to_addrs=list(recipients))
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError(
                f"{where} refused the login of {config.username!r} ({exc.smtp_code}): "
                "check [email] username and the password"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise MailError(
                f"{where}: {str(exc).rstrip('.')}; set [email] security (and username) to "
                "match what the server offers"
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailError(f"{where} refused every recipient: {sorted(exc.recipients)}") from None
        except smtplib.SMTPServerDisconnected as exc:
            if "timed out" in str(exc):  # smtplib's word for a read that timed out
                raise MailError(
                    f"{where} did not answer within {config.timeout:g}s ([email] timeout)"
                ) from None
            raise MailError(f"{where} closed the connection: {exc}") from None
        except smtplib.SMTPException as exc:
            raise MailError(f"{where} failed: {exc}") from None
        except ssl.SSLError as exc:
            raise MailError(
                f"{where}: TLS failed ({exc.reason or exc}); is [email] security right, "
                "and does [email] ca_file hold its CA?"
            ) from None
        except TimeoutError:
            raise MailError(
                f"{where} did not answer within {config.timeout:g}s ([email] timeout)"
            ) from None
        except OSError as exc:
            raise MailError(f"{where} could not be reached: {exc.strerror or exc}") from None
        if refused:
            raise MailError(f"{where} refused some recipients: {sorted(refused)}")
