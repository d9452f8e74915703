"""Candidate answers: whole files sampled from one identical prompt.

Every candidate of a request is asked with the same instructions and the same prompt
(``candidate_prompt``: the request, its spec and the answer format, nothing else), so a
local server's prompt cache serves all of them; they differ only in temperature and seed.
An answer is read as whole files (``forgeline.llm.outputs.parse_files``); one that holds
no file is a candidate with no files, which every check then fails.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from pydantic import Field
from pydantic_ai import ModelRetry

from forgeline.config import FILTERS
from forgeline.llm.filters import Shape, filter_files
from forgeline.llm.outputs import files_layout, parse_files
from forgeline.spec.asking import AnyModel, ModelAnswer, ask
from forgeline.spec.checks import described
from forgeline.spec.model import Spec, SpecModel

CANDIDATE_INSTRUCTIONS = """You are a programmer. Write the program the request asks for, \
complete and working, with the file names and the names it gives. Use only the Python \
standard library unless the request says otherwise. Python files must be valid."""

#: Sampling of the candidates after the greedy one (issue 12: about 0.7, a seed each).
TEMPERATURE = 0.7

_TEST_FILE = re.compile(r"(^|/)(test_[^/]*\.py|[^/]*_test\.py|conftest\.py)$")
#: Files that configure pytest: a candidate's would change how the checks run.
_PYTEST_CONFIG = frozenset(
    {
        "pytest.ini",
        ".pytest.ini",
        "pytest.toml",
        ".pytest.toml",
        "tox.ini",
        "setup.cfg",
        "pyproject.toml",
    }
)


def is_test_module(path: str) -> bool:
    """A pytest test module (``test_x.py``, ``x_test.py``), not conftest or configuration."""
    return bool(_TEST_FILE.search(path)) and not path.endswith("conftest.py")


def is_test_file(path: str) -> bool:
    """Test files, conftest and pytest's configuration: a candidate's own tests never take
    part in selection, nor anything that would change how the checks run."""
    return bool(_TEST_FILE.search(path)) or path in _PYTEST_CONFIG


class Candidate(SpecModel):
    """One answer, as the files it writes."""

    files: dict[str, str] = Field(default_factory=dict)
    answer: ModelAnswer | None = None
    origin: str = "sample"
    """``greedy``, ``sample`` or ``repair``."""
    problem: str = ""
    """Why no file could be read from the answer, if none could."""

    @property
    def digest(self) -> str:
        """A content hash of the files (path and text), the candidate's identity."""
        h = hashlib.sha256()
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + self.files[path].encode() + b"\0")
        return h.hexdigest()[:16]

    @property
    def code_files(self) -> dict[str, str]:
        """The files that are not tests (nor pytest's configuration)."""
        return {p: t for p, t in self.files.items() if not is_test_file(p)}


def filtered(candidate: Candidate, spec: Spec, names: Sequence[str] = FILTERS) -> Candidate:
    """``candidate`` through the named answer repairs (``llm/filters.py``); the spec's
    files are the planned ones."""
    shape = Shape(planned=tuple(m.path for m in spec.modules))
    files = filter_files(dict(candidate.files), names, shape)
    return candidate if files == candidate.files else candidate.model_copy(update={"files": files})


def candidate_prompt(spec: Spec) -> str:
    """The one prompt every candidate of ``spec`` is asked with."""
    paths = [m.path for m in spec.modules]
    interface = described(spec)
    return (
        f"Request: {spec.request}\n\n"
        + (f"What the answer must have:\n{interface}\n\n" if interface else "")
        + f"Answer with every file of the program, {files_layout(*paths[:1])}\n\n"
        "Write the code as it goes in the file, with no escaping and no explanations "
        "inside the block."
    )


def read_candidate(answer: ModelAnswer, spec: Spec, origin: str = "sample") -> Candidate:
    """The files in ``answer`` (unnamed blocks take the spec's files in order)."""
    try:
        change = parse_files(answer.text, [m.path for m in spec.modules])
    except ModelRetry as exc:
        return Candidate(answer=answer, origin=origin, problem=str(exc))
    files = {f.path: f.content for f in change.files}
    return Candidate(files=files, answer=answer, origin=origin)


async def sample_candidate(
    model: AnyModel,
    spec: Spec,
    *,
    temperature: float | None,
    seed: int,
    timeout: float | None = None,
) -> Candidate:
    """One candidate: ``temperature`` 0 (or None: the model's own) is the greedy answer."""
    answer = await ask(
        model,
        CANDIDATE_INSTRUCTIONS,
        candidate_prompt(spec),
        temperature=temperature,
        seed=seed,
        timeout=timeout,
    )
    origin = "greedy" if not temperature else "sample"
    return read_candidate(answer, spec, origin)


async def sample_candidates(
    model: AnyModel,
    spec: Spec,
    count: int,
    *,
    temperature: float = TEMPERATURE,
    first_seed: int = 1,
    timeout: float | None = None,
) -> list[Candidate]:
    """``count`` candidates at ``temperature``, seeds ``first_seed`` on, one at a time
    (a local server answers one request at a time anyway)."""
    return [
        await sample_candidate(
            model, spec, temperature=temperature, seed=first_seed + i, timeout=timeout
        )
        for i in range(count)
    ]
