"""Instructions for each role, and how the task's context is shown to a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from forgeline.core.task import TaskState
from forgeline.llm.outputs import files_layout
from forgeline.spec.checks import described
from forgeline.spec.model import Spec

PLANNER = """You are the planner of a software team. Break the user's request into a small \
plan of concrete steps. Each step has a short id (a, b, c ...), a title, a description \
precise enough for a programmer, the files it writes, and depends_on (ids of steps that must \
be finished first). Steps that do not depend on each other can run at the same time. \
Include writing pytest tests as part of the steps. Use kind "clarification" only when the \
request cannot be built without an answer from the user; its description is the question. \
Keep it to the fewest steps that build the request. Rate the request's complexity from 1 \
(a few lines) to 10 (a large system).

An example, for the request "a function that converts Celsius to Fahrenheit, with tests" \
(it shows the form only: plan the user's request, not this one):
{"summary": "A temperature conversion function with pytest tests.", "items": [
 {"id": "a", "title": "conversion function", "description": "Write \
celsius_to_fahrenheit(c) in temperature.py, returning c * 9 / 5 + 32.", \
"kind": "processing", "depends_on": [], "files": ["temperature.py"]},
 {"id": "b", "title": "tests", "description": "Write pytest tests in test_temperature.py \
that import celsius_to_fahrenheit and check it on values the request implies.", \
"kind": "processing", "depends_on": ["a"], "files": ["test_temperature.py"]}]}"""

ARCHITECT = """You are the architect. Given the request and the plan, decide the design: \
the files and what each holds, the packages it needs, and how to smoke-run the result. \
Write the decision as an architecture decision record (context, decision, consequences). \
For run: use kind "cli" with a command that exercises the program once (e.g. ["python", \
"app.py", "--help"]), "library" with a command that imports it, or "web" with a command \
that starts a server on {port} and a health_path that answers 200. Use the Python \
standard library where it does the job. When the request needs a package from PyPI (it \
names one, such as FastAPI, Flask, requests or click), list in packages every package the \
program and its tests import, by PyPI name, each with the reason. A FastAPI service needs \
"fastapi", "httpx" (its TestClient) and "uvicorn", and runs with ["python", "-m", \
"uvicorn", "app:app", "--port", "{port}"]. packages is empty when the standard library \
is enough.

An example of the form, for a plan that writes temperature.py and test_temperature.py:
{"summary": "temperature.py holds the conversion and a small command line; \
test_temperature.py tests it with pytest.", "decision": "Context: the request needs one \
pure function that is easy to test. Decision: one module with the function and a main() \
for the command line; standard library only. Consequences: no dependencies; the command \
line is the smoke test.", "files": [{"path": "temperature.py", "purpose": "..."}, \
{"path": "test_temperature.py", "purpose": "..."}], "run": {"kind": "cli", \
"command": ["python", "temperature.py", "100"], "health_path": "/health"}, "packages": []}

Your answer names the files of the plan you are given, says what each holds, names the \
packages the request needs, and smoke-runs the program of the user's request."""

CODER = """You are the coder. Implement exactly the step you are given, following the \
design. Change only the files the step needs (paths relative to the repository root). \
Python files must be valid and tests must use pytest. A test file imports what it tests \
from its module and never defines it again; its expected values follow from the request."""

FIXER = """You are the fixer. The tests fail. Read the failures and the code and change the \
files that must change. Fix the cause; do not delete or weaken tests that check the request."""

# How the coder and the fixer answer, per ``[coder] edit_format`` (added to CODER/FIXER).
EDIT_FORMAT = {
    "whole": "Answer with the complete new content of every file you create or change.",
    "search_replace": "Answer with search/replace blocks: for each change, the file, the \
exact current text to replace (copied from the file, whitespace included, long enough to \
occur only once) and its replacement. To create a file, give an empty search text and the \
whole content as the replacement.",
    "diff": "Answer with one unified diff as `git diff` writes it (--- a/path, +++ b/path, \
@@ hunks with three lines of unchanged context; --- /dev/null for a new file), made \
against the files as they are now.",
}


def answer_format(edit_format: str, paths: Sequence[str] = ()) -> str:
    """How to answer in ``edit_format``; for ``files`` shown with the first of ``paths``
    (the step's files) as the example path, since a small model copies it."""
    if edit_format == "files":
        return (
            "Answer with the complete new content of every file you create or change, "
            f"{files_layout(*paths[:1])}\n\nWrite the code as it goes in the file, with no "
            "escaping and no explanations inside the block."
        )
    return EDIT_FORMAT[edit_format]


TOOLS = """You can read the repository with the tools read_file, list_files and search \
before you answer; the files shown in the prompt are current. run_command runs allowlisted \
commands in the repository (its tests, for instance); files a command writes are \
discarded, so put every change in your answer."""

# Appended to a step's prompt when the answer before was refused: the reason, never the
# refused answer (that goes to a conversation of its own).
REFUSED = """An earlier answer to this was refused, and nothing of it was kept: {reason}
Answer afresh, avoiding that."""

REVIEWER = """You are the reviewer. Check that the change does what the request asks, is \
tested and is safe. Approve when it does; otherwise list concrete changes to make."""


def files_block(files: Mapping[str, str]) -> str:
    if not files:
        return "(no files yet)"
    return "\n\n".join(f"### {path}\n```\n{text}\n```" for path, text in files.items())


def spec_text(state: TaskState) -> str:
    """What the request itself fixes (its files, interface and examples), as text; empty
    when it states none."""
    if state.spec is None or not state.spec.spec:
        return ""
    return described(Spec.model_validate(state.spec.spec))


def task_context(state: TaskState) -> str:
    lines = [f"Request: {state.request}"]
    if fixed := spec_text(state):
        lines.append(f"What the request states (its own tests check it):\n{fixed}")
    if state.chosen is not None and not state.chosen.spec_ok:
        lines.append(
            "A first attempt without a plan met none of those checks; its closest answer "
            "is in the current files."
        )
    if state.plan_summary:
        lines.append(f"Plan: {state.plan_summary}")
        for item_state in state.items.values():
            item = item_state.item
            lines.append(f"- [{item.id}] {item.title}: {item.description}")
            if item_state.answer:
                lines.append(f"  answer from the user: {item_state.answer}")
    if state.architecture is not None:
        arch = state.architecture
        lines.append(f"Design: {arch.summary}")
        lines += [f"- {f.path}: {f.purpose}" for f in arch.files]
        if arch.packages:
            named = ", ".join(
                f"{p.name} ({p.reason})" if p.reason else p.name for p in arch.packages
            )
            lines.append(f"Packages (declared in requirements.txt): {named}")
    if state.context_summary:
        lines.append(f"Earlier context (summarised): {state.context_summary}")
    return "\n".join(lines)


def trim(text: str, limit: int = 6000) -> str:
    """Keep the end of long output (where pytest puts the summary)."""
    return text if len(text) <= limit else "... (trimmed)\n" + text[-limit:]
