"""A repair in a fresh conversation: the request, one candidate and one error, no more.

Used only when no candidate passes the spec's checks. The model never sees other
candidates, earlier answers or a conversation: what was rejected never goes back into a
context as something to continue.
"""

from __future__ import annotations

from forgeline.llm.outputs import files_layout
from forgeline.selection.candidate import Candidate, read_candidate
from forgeline.spec.asking import AnyModel, ask
from forgeline.spec.model import Spec

REPAIR_INSTRUCTIONS = """You are a programmer fixing a program. You get a request, the \
program written for it and one error it fails with. Fix the cause of the error so that \
the program does what the request asks. Answer with every file of the fixed program, \
complete. Python files must be valid."""

#: Characters of the error shown.
ERROR_LIMIT = 2000


def repair_prompt(spec: Spec, candidate: Candidate, error: str) -> str:
    files = "\n\n".join(
        f"{path}\n```python\n{text}```" for path, text in candidate.code_files.items()
    )
    paths = [m.path for m in spec.modules] or list(candidate.code_files)
    return (
        f"Request: {spec.request}\n\nThe program:\n\n{files or '(no files)'}\n\n"
        f"The error:\n```\n{error.strip()[-ERROR_LIMIT:]}\n```\n\n"
        f"Answer with every file of the fixed program, {files_layout(*paths[:1])}"
    )


async def repair(
    model: AnyModel,
    spec: Spec,
    candidate: Candidate,
    error: str,
    *,
    seed: int = 0,
    timeout: float | None = None,
) -> Candidate:
    """One repaired candidate (greedy), asked in a conversation of its own."""
    answer = await ask(
        model,
        REPAIR_INSTRUCTIONS,
        repair_prompt(spec, candidate, error),
        temperature=0.0,
        seed=seed,
        timeout=timeout,
    )
    return read_candidate(answer, spec, origin="repair")
