"""The candidate pool: every model answer selection could use, stored once per request.

``python -m benchmarks.agents.pool collect --out DIR`` asks the model, per request of the
suite: the example copier (greedy), the greedy candidate (seed 0), ``--samples`` candidates
at temperature 0.7 (seeds 1..N, one identical prompt: request + spec + answer format, so
llama.cpp's prompt cache serves them all), ``--designers`` designer test files (0.7, seeds
1..N) and, for each candidate that fails the spec's checks, one fresh-context repair
(greedy) from its first error. Deciding which to repair runs the spec's checks (pytest).
Each request is written to ``DIR/<name>.json`` as soon as it is done, so a stopped run keeps
what it finished and a second run skips what is there.

``python -m benchmarks.agents.pool replay DIR`` (``replay.py``) then needs no model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic_ai.models import Model

from benchmarks.agents.model_choice import harness_model
from benchmarks.agents.suite import BenchRequest, select
from forgeline.errors import ForgelineError
from forgeline.sandbox.select import UnsafeSpawnerWarning, choose_spawner
from forgeline.selection.candidate import Candidate, sample_candidate
from forgeline.selection.designer import DesignedTests, design_tests, read_designed
from forgeline.selection.execution import CandidateRunner, build_suite
from forgeline.selection.flow import evaluate_all
from forgeline.selection.repair import repair
from forgeline.spec import Spec, derive_spec
from forgeline.spec.copier import CopyResult, copy_examples, with_copies
from forgeline.workspace.venv import ensure_venv

SAMPLES = 8
DESIGNERS = 3
TEMPERATURE = 0.7


class Pool:
    """One request's stored answers (the JSON file's content)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def spec(self) -> Spec:
        return Spec.model_validate(self.data["spec"])

    @property
    def greedy(self) -> Candidate:
        return Candidate.model_validate(self.data["greedy"])

    @property
    def samples(self) -> list[Candidate]:
        return [Candidate.model_validate(c) for c in self.data["samples"]]

    @property
    def designed(self) -> list[DesignedTests]:
        """The designer answers, read again (a better reader applies to a stored pool)."""
        out = []
        for index, stored in enumerate(self.data["designed"], 1):
            answer = DesignedTests.model_validate(stored).answer
            if answer is None:
                out.append(DesignedTests.model_validate(stored))
            else:
                out.append(
                    read_designed(answer.text, self.spec, index).model_copy(
                        update={"answer": answer}
                    )
                )
        return out

    @property
    def repairs(self) -> dict[str, Candidate]:
        """Repairs by the digest of the candidate they repair."""
        return {k: Candidate.model_validate(v) for k, v in self.data["repairs"].items()}

    @property
    def copy_tokens(self) -> int:
        answer = (self.data.get("copies") or {}).get("answer") or {}
        return int(answer.get("input_tokens", 0)) + int(answer.get("output_tokens", 0))

    @classmethod
    def load(cls, path: Path) -> Pool:
        return cls(json.loads(path.read_text()))


async def make_runner(root: Path) -> CandidateRunner:
    """The sandbox where bubblewrap works (plain processes otherwise), a venv's pytest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsafeSpawnerWarning)
        spawner = choose_spawner(require_sandbox=False, allow_unsafe=True)
    venv = await ensure_venv(root / "venv-root")
    return CandidateRunner(spawner, venv=venv, scratch=root / "scratch")


async def collect_one(
    model: Model,
    request: BenchRequest,
    runner: CandidateRunner,
    *,
    samples: int,
    designers: int,
    repairs: bool,
    timeout: float | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    spec = derive_spec(request.request)
    copies: CopyResult = await copy_examples(model, spec, timeout=timeout)
    spec = with_copies(spec, [copies])
    greedy = await sample_candidate(model, spec, temperature=0.0, seed=0, timeout=timeout)
    pool = [
        await sample_candidate(model, spec, temperature=TEMPERATURE, seed=seed, timeout=timeout)
        for seed in range(1, samples + 1)
    ]
    designed = [
        await design_tests(model, spec, i, temperature=TEMPERATURE, seed=i, timeout=timeout)
        for i in range(1, designers + 1)
    ]
    fixed: dict[str, Candidate] = {}
    if repairs:
        suite = build_suite(spec)
        everyone = [greedy, *pool]
        for candidate, result in zip(
            everyone, await evaluate_all(runner, everyone, suite), strict=True
        ):
            if not result.spec_ok and candidate.digest not in fixed:
                fixed[candidate.digest] = await repair(
                    model, spec, candidate, result.error, timeout=timeout
                )
    return {
        "name": request.name,
        "kind": request.kind,
        "held_out": request.held_out,
        "request": request.request,
        "spec": spec.model_dump(mode="json"),
        "copies": copies.model_dump(mode="json"),
        "greedy": greedy.model_dump(mode="json"),
        "samples": [c.model_dump(mode="json") for c in pool],
        "designed": [d.model_dump(mode="json") for d in designed],
        "repairs": {k: v.model_dump(mode="json") for k, v in fixed.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }


async def collect(args: argparse.Namespace, chosen: Sequence[BenchRequest]) -> int:
    model, label, model_timeout = harness_model(args.model, args.config)
    timeout = args.model_timeout or model_timeout
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"candidate pool: {len(chosen)} request(s), model {label}, into {args.out}", flush=True)
    with tempfile.TemporaryDirectory(prefix="agents-pool-") as tmp:
        runner = await make_runner(Path(tmp))
        for number, request in enumerate(chosen, 1):
            target = args.out / f"{request.name}.json"
            if target.is_file():
                print(f"[{number}/{len(chosen)}] {request.name}: already collected", flush=True)
                continue
            data = await collect_one(
                model,
                request,
                runner,
                samples=args.samples,
                designers=args.designers,
                repairs=not args.no_repairs,
                timeout=timeout,
            )
            data["model"] = label
            target.write_text(json.dumps(data, indent=1) + "\n")
            print(
                f"[{number}/{len(chosen)}] {request.name}: {len(data['samples'])} samples, "
                f"{len(data['repairs'])} repair(s), {data['seconds']:.0f}s",
                flush=True,
            )
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agents.pool")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="ask the model and store the pool")
    c.add_argument("--out", type=Path, required=True, help="directory for <request>.json")
    c.add_argument("--model", metavar="PROVIDER:MODEL")
    c.add_argument("--config", type=Path)
    c.add_argument("--only", metavar="NAME,...")
    c.add_argument("--requests", type=int, metavar="N")
    which = c.add_mutually_exclusive_group()
    which.add_argument("--held-out", action="store_true", help="only the held-out requests")
    which.add_argument("--tuned", action="store_true", help="only the tuned requests")
    c.add_argument("--samples", type=int, default=SAMPLES)
    c.add_argument("--designers", type=int, default=DESIGNERS)
    c.add_argument("--no-repairs", action="store_true")
    c.add_argument("--model-timeout", type=float, metavar="S")
    r = sub.add_parser("replay", help="run every selection method on a stored pool")
    r.add_argument("pool", type=Path)
    r.add_argument("--draw", type=int, default=5, help="candidates per draw (default 5)")
    r.add_argument("--bootstrap", type=int, default=1000, help="draws per request")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "replay":
        from benchmarks.agents.replay import replay_main

        return replay_main(args)
    held = True if args.held_out else False if args.tuned else None
    try:
        chosen = select(args.requests, args.only, held_out=held, packages=False)
        return asyncio.run(collect(args, chosen))
    except (ValueError, ForgelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
