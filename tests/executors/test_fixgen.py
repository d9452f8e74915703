"""The fix loop with a scripted proposer, a real repository and a really failing pytest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest

from forgeline.core.events import FileWrite
from forgeline.errors import ForgelineError
from forgeline.executors.fixgen import FixAttempt, FixRun, build_prompt, fix_rate, generate_fix
from forgeline.executors.patch import Change, EditChange, SearchReplace
from forgeline.executors.validation import PythonValidator
from forgeline.llm.outputs import CodeChange
from forgeline.runs.testrun import TestReport, run_pytest
from forgeline.sandbox.local import LocalSpawner
from forgeline.workspace.git import GitWorkspace
from tests.executors.helpers import MakeRepo, tree

#: Collection is the patch engine's business (tested there); compiling is enough here.
COMPILE_ONLY = PythonValidator(None)

CALC = "def add(a, b):\n    return a - b\n"
TEST_CALC = (
    "from calc import add\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_add_zero():\n    assert add(0, 0) == 0\n"
)


def calc(body: str) -> CodeChange:
    return CodeChange(
        summary="calc", files=(FileWrite(path="calc.py", content=f"def add(a, b):\n{body}"),)
    )


def scripted(
    answers: Sequence[Change | Exception],
) -> tuple[Callable[[str], Awaitable[Change]], list[str]]:
    """A proposer that answers from a script and keeps the prompts it was given."""
    prompts: list[str] = []
    queue = list(answers)

    async def propose(prompt: str) -> Change:
        prompts.append(prompt)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return propose, prompts


async def failing_repo(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> tuple[GitWorkspace, Callable[[], Awaitable[TestReport]], TestReport]:
    ws = await make_repo({"calc.py": CALC, "tests/test_calc.py": TEST_CALC})

    async def run_tests() -> TestReport:
        return await run_pytest(ws.path, spawner)

    first = await run_tests()
    assert not first.ok
    assert "tests/test_calc.py::test_add" in first.failing
    return ws, run_tests, first


async def test_rejected_attempts_then_a_fix_that_passes(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws, run_tests, first = await failing_repo(make_repo, spawner)
    propose, prompts = scripted(
        [
            EditChange(edits=(SearchReplace(path="calc.py", search="a + b", replace="b + a"),)),
            calc("    return (a +\n"),  # does not compile
            EditChange(edits=(SearchReplace(path="calc.py", search="a - b", replace="a + b"),)),
        ]
    )
    seen: list[FixAttempt] = []

    async def on_attempt(attempt: FixAttempt) -> None:
        seen.append(attempt)

    run = await generate_fix(
        ws,
        first.output,
        propose=propose,
        run_tests=run_tests,
        validate=PythonValidator(spawner),
        max_attempts=5,
        on_attempt=on_attempt,
    )

    assert [a.outcome for a in run.attempts] == ["rejected", "rejected", "tests_pass"]
    assert [a.attempt for a in run.attempts] == [1, 2, 3]
    assert run.fixed
    assert run.stopped == "tests_pass"
    assert run.changed == ("calc.py",)
    assert list(run.attempts) == seen
    assert "does not occur" in run.attempts[0].reason
    assert "calc.py does not compile" in run.attempts[1].reason
    assert run.attempts[2].paths == ("calc.py",)
    assert all(a.duration_s >= 0 for a in run.attempts)
    # the failing output reaches the proposer; later prompts say why earlier attempts failed
    assert "test_add" in prompts[0]
    assert "Earlier attempts" not in prompts[0]
    assert "- attempt 1: rejected: search/replace block 1 of 1 (calc.py)" in prompts[1]
    rejected = "- attempt 2: rejected: the change was rolled back: calc.py does not compile"
    assert rejected in prompts[2]
    # the loop does not commit: the fix is in the tree for the caller
    assert await ws.dirty_files() == ["calc.py"]
    assert (await run_tests()).ok


async def test_the_same_change_twice_stops_the_loop(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws, run_tests, first = await failing_repo(make_repo, spawner)
    wrong = calc("    return a * b\n")
    propose, prompts = scripted([wrong, wrong, calc("    return a + b\n")])
    run = await generate_fix(
        ws,
        first.output,
        propose=propose,
        run_tests=run_tests,
        validate=COMPILE_ONLY,
        max_attempts=3,
        keep_failed=False,
    )
    assert [a.outcome for a in run.attempts] == ["tests_fail", "rejected"]
    assert run.stopped == "no_progress"
    assert run.attempts[1].reason == "the same change as attempt 1: no progress"
    assert run.attempts[0].fingerprint == run.attempts[1].fingerprint
    assert len(prompts) == 2
    # the new failure output (a * b) is what the second prompt shows
    assert "assert 6 == 5" in prompts[1]
    assert not run.fixed


async def test_a_kept_change_makes_a_repeat_an_empty_change(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws, run_tests, first = await failing_repo(make_repo, spawner)
    # a different proposal (an edit, not a write) that ends where the tree already is
    same_result = EditChange(
        edits=(SearchReplace(path="calc.py", search="a * b", replace="a * b"),)
    )
    propose, _ = scripted([calc("    return a * b\n"), same_result])
    run = await generate_fix(
        ws,
        first.output,
        propose=propose,
        run_tests=run_tests,
        validate=COMPILE_ONLY,
        max_attempts=4,
    )
    assert [a.outcome for a in run.attempts] == ["tests_fail", "rejected"]
    assert run.stopped == "no_progress"
    assert run.attempts[1].reason.startswith("no progress: the change leaves every file")
    assert run.changed == ("calc.py",)
    assert "a * b" in (ws.path / "calc.py").read_text()


async def test_max_attempts_bound_the_loop_and_reverted_attempts_leave_no_trace(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws, run_tests, first = await failing_repo(make_repo, spawner)
    before = await tree(ws)
    propose, prompts = scripted(
        [
            ForgelineError("the model is down"),
            calc("    return a * b\n"),
            calc("    return b - a\n"),
            calc("    return a + b\n"),  # never asked for
        ]
    )
    run = await generate_fix(
        ws,
        first.output,
        propose=propose,
        run_tests=run_tests,
        validate=COMPILE_ONLY,
        max_attempts=3,
        keep_failed=False,
        max_chars=300,
    )
    assert [a.outcome for a in run.attempts] == ["rejected", "tests_fail", "tests_fail"]
    assert run.attempts[0].reason == "the coder back-end failed: the model is down"
    assert run.attempts[1].reason == "the tests still fail; the change was reverted"
    assert run.stopped == "max_attempts"
    assert run.changed == ()
    assert await tree(ws) == before
    assert len(prompts) == 3
    # the failure output in each prompt is cut to its last 300 characters
    body = prompts[0].split("```\n", 1)[1].split("\n```", 1)[0]
    assert body.startswith("[... ")
    assert len(body.split("\n", 1)[1]) <= 300
    assert body.endswith(first.output.rstrip()[-50:])


async def test_tests_that_cannot_run_end_the_loop_with_the_change_applied(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws, _, first = await failing_repo(make_repo, spawner)

    async def broken_runner() -> TestReport:
        raise ForgelineError("the sandbox is gone")

    propose, _ = scripted([calc("    return a + b\n")])
    run = await generate_fix(
        ws,
        first.output,
        propose=propose,
        run_tests=broken_runner,
        validate=PythonValidator(None),
    )
    assert [(a.outcome, a.reason) for a in run.attempts] == [
        ("applied", "the tests could not run: the sandbox is gone")
    ]
    assert run.stopped == "untestable"
    assert run.changed == ("calc.py",)


async def test_bad_bounds_are_refused(make_repo: MakeRepo) -> None:
    ws = await make_repo({})
    propose, _ = scripted([])

    async def never() -> TestReport:
        raise AssertionError

    with pytest.raises(ValueError, match="max_attempts"):
        await generate_fix(
            ws, "", propose=propose, run_tests=never, validate=PythonValidator(None), max_attempts=0
        )


def test_fix_rate_and_prompt_building() -> None:
    passed = FixRun(attempts=(), stopped="tests_pass")
    failed = FixRun(attempts=(), stopped="max_attempts")
    assert fix_rate([passed, failed, failed, passed]) == 0.5
    assert fix_rate([]) == 0.0
    prompt = build_prompt(
        "Fix it.",
        "x" * 50,
        10,
        [FixAttempt(attempt=1, outcome="tests_fail", reason="r" * 1000)],
    )
    assert prompt.startswith("Fix it.\n\nThe end of the test output (10 characters at most):")
    assert "xxxxxxxxxx\n```" in prompt
    assert "- attempt 1: tests fail: [... 400 earlier characters truncated ...]" in prompt
