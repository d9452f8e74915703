"""The package policy: which packages a task's project may get (``[packages]``).

Checked twice. **By name, before anything is fetched** (``check_declared``), for each
package the project declares, in this order:

1. ``deny``: an entry matching the name refuses it (``[packages] deny``/``extra_deny``);
2. ``typosquat``: a name one edit (an insertion, deletion, substitution or swap of two
   neighbours) away from a popular package, and not itself popular, is refused unless
   ``allow``/``extra_allow`` names it exactly: ``reqeusts``, ``numpyy``, ``flaks``;
3. ``allow``: a name no entry matches is refused (``allow = ["*"]`` allows every name).

**Once resolved** (``check_resolved``), for the whole set of wheels the declared packages
bring in: ``deny`` again (a denied package is refused whoever needs it), and the caps on
the number of wheels (``max_wheels``) and on their total size (``max_total_mb``).

A refusal is a ``PackageRefused`` naming the package and the rule: the task fails with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from packaging.utils import canonicalize_name

from forgeline.config import PackagesConfig
from forgeline.core.events import PackagePin
from forgeline.workspace.declared import PackageError

__all__ = [
    "POPULAR",
    "PackagePolicy",
    "PackageRefused",
    "one_edit_apart",
]

#: Much-downloaded packages a typosquat would imitate (with the default ``allow`` list).
# fmt: off
POPULAR: frozenset[str] = frozenset((
    "aiohttp", "aiosignal", "alembic", "annotated-types", "anyio", "argcomplete", "arrow",
    "async-timeout", "attrs", "awscli", "babel", "bcrypt", "beautifulsoup4", "black",
    "boto3", "botocore", "cachetools", "certifi", "cffi", "chardet", "charset-normalizer",
    "click", "colorama", "coverage", "cryptography", "cycler", "decorator", "distlib",
    "django", "docker", "docutils", "email-validator", "exceptiongroup", "fastapi",
    "filelock", "flake8", "flask", "fonttools", "frozenlist", "fsspec", "google-api-core",
    "google-auth", "greenlet", "grpcio", "gunicorn", "h11", "httpcore", "httpx",
    "huggingface-hub", "hypothesis", "idna", "importlib-metadata", "iniconfig", "isort",
    "itsdangerous", "jinja2", "jmespath", "joblib", "jsonschema", "keras", "kiwisolver",
    "lxml", "markdown", "markupsafe", "matplotlib", "mccabe", "more-itertools", "multidict",
    "mypy", "networkx", "nltk", "numpy", "oauthlib", "openai", "openpyxl", "packaging",
    "pandas", "paramiko", "pathspec", "pendulum", "pillow", "pip", "platformdirs", "pluggy",
    "polars", "protobuf", "psutil", "psycopg", "psycopg2", "psycopg2-binary", "pyarrow",
    "pyasn1", "pycodestyle", "pycparser", "pydantic", "pydantic-core", "pydantic-settings",
    "pyflakes", "pygments", "pyjwt", "pylint", "pynacl", "pyparsing", "pytest",
    "pytest-asyncio", "pytest-cov", "pytest-mock", "python-dateutil", "python-dotenv",
    "python-multipart", "pytz", "pyyaml", "redis", "regex", "requests", "requests-oauthlib",
    "rich", "rsa", "ruff", "s3transfer", "scikit-learn", "scipy", "seaborn", "selenium",
    "setuptools", "six", "sniffio", "soupsieve", "sqlalchemy", "starlette", "statsmodels",
    "sympy", "tabulate", "tenacity", "tensorflow", "tomli", "tomlkit", "torch", "tqdm",
    "typer", "typing-extensions", "tzdata", "ujson", "urllib3", "uvicorn", "virtualenv",
    "websockets", "werkzeug", "wheel", "wrapt", "xlsxwriter", "yarl", "zipp",
))
# fmt: on


class PackageRefused(PackageError):
    """A package the policy does not let in: ``name`` and the ``rule`` that refused it."""

    def __init__(self, name: str, rule: str, reason: str) -> None:
        super().__init__(f"package {name!r} is refused ({rule}): {reason}")
        self.name = name
        self.rule = rule


def one_edit_apart(a: str, b: str) -> bool:
    """Whether ``a`` becomes ``b`` by one insertion, deletion, substitution or swap of two
    neighbouring characters (Damerau-Levenshtein distance 1)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    if a[i + 1 :] == b[i + 1 :]:
        return True
    return a[i : i + 2] == b[i : i + 2][::-1] and a[i + 2 :] == b[i + 2 :]


def _matching(name: str, entries: Iterable[str]) -> str | None:
    for entry in entries:
        if fnmatchcase(name, canonicalize_name(entry) if _plain(entry) else entry.lower()):
            return entry
    return None


def _plain(entry: str) -> bool:
    return not any(ch in entry for ch in "*?[")


@dataclass(frozen=True)
class PackagePolicy:
    """``[packages]``'s rules, applied by name (``check_declared``) and to a resolved set
    of wheels (``check_resolved``)."""

    config: PackagesConfig

    def _denied(self, name: str, needed: str = "") -> PackageRefused | None:
        entry = _matching(name, self.config.deny_entries)
        if entry is None:
            return None
        return PackageRefused(
            name,
            "deny",
            f"it matches {entry!r} in [packages] deny{needed}; declare another package",
        )

    def refusal(self, name: str) -> PackageRefused | None:
        """Why the declared package ``name`` is refused, or None when it may be declared."""
        name = canonicalize_name(name)
        denied = self._denied(name)
        if denied is not None:
            return denied
        explicit = {canonicalize_name(e) for e in self.config.allow_entries if _plain(e)}
        if name not in explicit and name not in POPULAR:
            near = sorted(p for p in POPULAR | explicit if one_edit_apart(name, p))
            if near:
                return PackageRefused(
                    name,
                    "typosquat",
                    f"it is one edit away from the popular package {near[0]!r}; declare "
                    f"{near[0]!r} if that is what is meant, or add {name!r} to [packages] "
                    "extra_allow if it really is the package",
                )
        if _matching(name, self.config.allow_entries) is None:
            return PackageRefused(
                name,
                "allow",
                "no entry of [packages] allow matches it; add it to [packages] extra_allow "
                "to let projects declare it",
            )
        return None

    def check_declared(self, names: Iterable[str]) -> None:
        """Refuse (``PackageRefused``) the first declared name the policy does not allow."""
        for name in names:
            refused = self.refusal(name)
            if refused is not None:
                raise refused

    def check_resolved(self, pins: Sequence[PackagePin], declared: Sequence[str] = ()) -> None:
        """Refuse a resolved set with a denied package in it (whoever needs it), more
        wheels than ``max_wheels`` or more megabytes than ``max_total_mb``."""
        needed = f" (it comes with {', '.join(declared)})" if declared else ""
        for pin in pins:
            denied = self._denied(canonicalize_name(pin.name), needed)
            if denied is not None:
                raise denied
        what = ", ".join(declared) or "the declared packages"
        if len(pins) > self.config.max_wheels:
            raise PackageRefused(
                what,
                "max_wheels",
                f"they need {len(pins)} wheels, more than [packages] max_wheels = "
                f"{self.config.max_wheels}; declare fewer packages or raise the cap",
            )
        total = sum(pin.size for pin in pins)
        if total > self.config.max_total_mb * 1e6:
            raise PackageRefused(
                what,
                "max_total_mb",
                f"their wheels weigh {total / 1e6:.1f} MB, more than [packages] "
                f"max_total_mb = {self.config.max_total_mb:g}; declare fewer or smaller "
                "packages or raise the cap",
            )
