"""Secrets are never recorded: one redactor for events, log lines and printed messages.

A provider's error body may echo the key it was sent (a 401 "Incorrect API key provided:
sk-...", a 500 that lists the request headers), and such text travels on as a stage's
error, a task's failure reason, a log line and a message on the terminal. Every piece of
text that leaves the process that way passes through ``Redactor.text``, which replaces

- every secret forgeline knows from its settings (``secrets_of``): every ``SecretStr`` in
  them (the providers' keys, ``[coder] env``, the GitHub token, the SMTP password, the
  trace collector's headers) and the values of the variables their ``*_env`` keys name,
  the password of the store URL, the broker URL and the package index URL, and the values of
  environment variables named like keys (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``,
  ``*_PASSWORD``, ...), which is where pydantic-ai's providers and the coding CLIs read
  theirs;
- text shaped like a well-known kind of key, configured or not (``PATTERNS``): ``sk-...``,
  ``Bearer ...``, ``ghp_...``, ``xoxb-...``, a URL's ``user:password@``.

The redactor is the process's: ``load_settings`` hands it the secrets it read
(``remember``), so no entry point can forget to, and a path that never sees the settings
(the command line's error handler, a library's log line) still redacts them. Secrets only
accumulate: redacting a value the process once knew is never wrong. Values shorter than
``MIN_SECRET`` characters are not treated as secrets (they would mask ordinary words).

Where it applies, once each: ``redact_event`` in the event store's ``append_batch``, the one
door every event goes through, whoever produced it (so the stored row, the store's
in-memory copy, the terminal and the API all see the redacted text); ``RedactingFilter``
on every log record (installed as the log record factory's last step), and every value of
a structured log line once more (``observability.logs``); span attributes and error
descriptions (``observability.tracing``); and the command line's error message
(``redact``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from forgeline.config import Settings
    from forgeline.core.events import NewEvent

__all__ = [
    "MASK",
    "MIN_SECRET",
    "PATTERNS",
    "RedactingFilter",
    "Redactor",
    "current",
    "redact",
    "redact_event",
    "remember",
    "secrets_of",
]

MASK = "[redacted]"
MIN_SECRET = 8
"""Shorter values are not redacted: they would mask ordinary words in every event."""

#: Well-known shapes of keys and credentials, each behind a marker (lower case) that its
#: matches contain: a pattern runs only on text with its marker, so text without one costs
#: a substring search. A group named ``keep`` is kept, the rest of a match is masked.
PATTERNS: tuple[tuple[str, str], ...] = (
    # OpenAI, Anthropic (sk-ant-), OpenRouter (sk-or-); not the end of "disk-..."
    ("sk-", r"sk-(?<![A-Za-z0-9]sk-)[A-Za-z0-9_\-]{16,}"),
    # an Authorization header's token (with a digit: "Bearer authentication" is prose)
    ("bearer", r"(?P<keep>(?i:bearer)\s+)(?=[A-Za-z._~+/\-]*[0-9])[A-Za-z0-9._~+/\-]{8,}=*"),
    ("basic", r"(?P<keep>(?i:authorization:\s*basic)\s+)[A-Za-z0-9+/]{8,}=*"),
    ("_", r"gh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub tokens
    ("github_pat_", r"github_pat_[A-Za-z0-9_]{20,}"),
    ("glpat-", r"glpat-[A-Za-z0-9_\-]{20,}"),  # GitLab
    ("xox", r"xox[abposr]-[A-Za-z0-9\-]{10,}"),  # Slack
    ("hf_", r"hf_[A-Za-z0-9]{30,}"),  # Hugging Face
    ("akia", r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    ("flk_", r"flk_[a-z0-9]{12}_[A-Za-z0-9_\-]{20,}"),  # forgeline's own API keys
    ("aiza", r"AIza[0-9A-Za-z_\-]{35}"),  # Google API key
    ("://", r"(?P<keep>://[^\s/:@'\"]+:)[^\s/@'\"]+(?=@)"),  # a URL's user:password@
)
_SHAPES = tuple((marker, re.compile(pattern)) for marker, pattern in PATTERNS)

#: Environment variables whose values are secrets by their name.
SECRET_ENV = re.compile(
    r"(_API_KEY|_APIKEY|_TOKEN|_SECRET|_SECRET_KEY|_SECRET_ACCESS_KEY|_PASSWORD|_PASSWD)$",
    re.IGNORECASE,
)


class Redactor:
    """Masks the given secrets and every ``PATTERNS`` match in text (immutable)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET:
                variants.add(secret)
                variants.add(quote(secret, safe=""))  # as it appears in a URL
        self.secrets = frozenset(variants)
        # Longest first: a secret that contains another is masked whole.
        self._ordered = sorted(self.secrets, key=len, reverse=True)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """This redactor knowing ``secrets`` too (self if they are all known)."""
        new = {s for s in secrets if len(s) >= MIN_SECRET} - self.secrets
        return Redactor(self.secrets | new) if new else self

    def text(self, text: str) -> str:
        """``text`` with every secret and key-shaped token replaced by ``[redacted]``."""
        if len(text) < MIN_SECRET:
            return text
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        lowered = text.lower()
        for marker, regex in _SHAPES:
            if marker in lowered:
                redacted, count = regex.subn(_replacement, text)
                if count:
                    text = redacted
        return text

    def value(self, value: _T) -> _T:
        """``value`` with ``text`` applied to every string in it: strings, tuples, lists,
        dicts and pydantic models (copied, never changed in place). Returns ``value``
        itself when nothing in it needed redacting."""
        return self._value(value)  # type: ignore[no-any-return]

    def _value(self, value: Any) -> Any:
        if type(value) is str:  # not an enum's value: those are forgeline's own words
            return self.text(value)
        if isinstance(value, BaseModel):
            updates = {}
            for name, field in value.__dict__.items():  # the fields, without getattr's cost
                if field is None or isinstance(field, int | float):
                    continue
                redacted = self._value(field)
                if redacted is not field:
                    updates[name] = redacted
            return value.model_copy(update=updates) if updates else value
        if isinstance(value, tuple | list):
            items = [self._value(item) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return type(value)(items)
        if isinstance(value, dict):
            pairs = {key: self._value(item) for key, item in value.items()}
            if all(pairs[key] is item for key, item in value.items()):
                return value
            return pairs
        return value


_T = TypeVar("_T")


def _replacement(match: re.Match[str]) -> str:
    return (match.groupdict().get("keep") or "") + MASK


def secrets_of(settings: Settings, environ: Mapping[str, str] | None = None) -> set[str]:
    """Every secret value ``settings`` names or reads (see the module's docstring): each
    ``SecretStr`` anywhere in the settings (providers' keys, ``[coder] env``, the GitHub
    token, the SMTP password, the collector's headers), the values of the variables its
    ``*_env`` keys name, the passwords in its URLs, and key-named environment variables."""
    environ = os.environ if environ is None else environ
    found: set[str] = set()

    def walk(value: Any, name: str = "") -> None:
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for field in type(value).model_fields:
                walk(getattr(value, field), field)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item, name)
        elif isinstance(value, str) and name.endswith("_env") and environ.get(value):
            found.add(environ[value])

    walk(settings)
    for url in (
        settings.store,
        settings.broker,
        settings.packages.index_url,
        *settings.packages.find_links,
    ):
        if url and "://" in url:
            password = _password(url)
            if password:
                found.add(password)
    found.update(value for name, value in environ.items() if SECRET_ENV.search(name) and value)
    return {s for s in found if len(s) >= MIN_SECRET}


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


# ------------------------------------------------------------------ the process's


_lock = threading.Lock()
_current = Redactor()
_factory_installed = False


def current() -> Redactor:
    """The process's redactor: the well-known shapes and every secret remembered."""
    return _current


def remember(secrets: Iterable[str]) -> None:
    """Add ``secrets`` to the process's redactor (``load_settings`` gives it
    ``secrets_of(settings)``), and make sure log records are redacted."""
    global _current
    with _lock:
        _current = _current.with_secrets(secrets)
    _install_log_redaction()


def redact(text: str) -> str:
    """``text`` redacted by the process's redactor."""
    return _current.text(text)


def redact_event(event: NewEvent) -> NewEvent:
    """``event`` with its payload redacted (the same object when nothing was secret).
    The envelope (ids, stream, actor) is forgeline's own and left as it is."""
    data = _current.value(event.data)
    return event if data is event.data else event.model_copy(update={"data": data})


# ------------------------------------------------------------------ log records


class RedactingFilter(logging.Filter):
    """Redacts a record's message (arguments merged in), its exception and stack text.

    Always lets the record through. ``remember`` installs it on every record the process
    creates (the log record factory), so it applies whichever handlers are configured,
    Python's last-resort handler included; it can also be added to a handler by hand.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = _current
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it when formatting
            return True
        record.msg, record.args = redactor.text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
            record.exc_info = None  # formatters use the redacted text, not the exception
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
        return True


def _install_log_redaction() -> None:
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()
        redacting = RedactingFilter()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redacting.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True
