"""Replay every selection method on a stored candidate pool, with pytest alone.

``python -m benchmarks.agents.pool replay DIR``: for each ``DIR/<name>.json`` (``pool.py``)
the spec's checks, the designer tests and the request's hidden tests run once against every
stored candidate (greedy, samples, repairs) and the reference solution, in the sandbox;
the results are kept in ``DIR/<name>.eval.json``. Then, per request, over ``--bootstrap``
draws of ``--draw`` of the samples:

- *greedy*: the greedy answer alone (the single shot);
- *spec filter*: the first drawn sample that passes every spec check (else the first);
- *spec + agreement*: ``selection.agreement.choose`` over the drawn samples;
- *+ repair*: when no drawn sample passes the spec, the stored fresh repair of the one
  chosen joins the draw and the choice is made again.

A pick counts when it passes every hidden test. Also per request: pass@1 and pass@k of the
samples (unbiased estimates over all of them), how often the agreement pick is right when
at least one drawn sample is, the designer tests' accuracy (the share the reference
passes), and tokens and seconds per arm (model time plus test time).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import statistics
import tempfile
from math import comb
from pathlib import Path
from typing import Any

from benchmarks.agents.pool import Pool, make_runner
from benchmarks.agents.suite import BY_NAME
from forgeline.selection.agreement import choose
from forgeline.selection.candidate import Candidate
from forgeline.selection.execution import CandidateRunner, Evaluation, build_suite
from forgeline.selection.flow import evaluate_all

ARMS = ("greedy", "spec", "agreement", "repair")
LABELS = {
    "greedy": "greedy single shot",
    "spec": "spec filter",
    "agreement": "spec + agreement",
    "repair": "+ one fresh repair",
}


def pass_at(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of ``c`` right among ``n`` samples."""
    if n == 0:
        return 0.0
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


async def evaluate_pool(pool: Pool, runner: CandidateRunner, cache: Path) -> dict[str, Any]:
    """Every stored candidate's evaluation (and the reference's), cached in ``cache`` for
    as long as the test files are the same."""
    request = BY_NAME[pool.name]
    hidden = {request.hidden_name: request.hidden_tests.read_text()}
    suite = build_suite(pool.spec, pool.designed, hidden)
    digest = hashlib.sha256(json.dumps(suite.files, sort_keys=True).encode()).hexdigest()
    if cache.is_file():
        cached = dict(json.loads(cache.read_text()))
        if cached.get("suite") == digest:
            return cached
    samples = pool.samples
    repairs = pool.repairs
    everyone = [pool.greedy, *samples, *repairs.values()]
    results = await evaluate_all(runner, everyone, suite)
    reference = await runner.evaluate(Candidate(files=request.reference()), suite)
    data = {
        "suite": digest,
        "evaluations": {
            c.digest: e.model_dump(mode="json") for c, e in zip(everyone, results, strict=True)
        },
        "reference": reference.model_dump(mode="json"),
        "designer_tests": len(suite.designer),
        "spec_checks": len(suite.spec_checks),
    }
    cache.write_text(json.dumps(data, indent=1) + "\n")
    return data


def _tokens(candidate: Candidate) -> int:
    return candidate.answer.tokens if candidate.answer else 0


def _seconds(candidate: Candidate) -> float:
    return candidate.answer.seconds if candidate.answer else 0.0


def replay_request(
    pool: Pool, evals: dict[str, Any], *, draw: int, draws: int, seed: int
) -> dict[str, Any]:
    """The figures of one request."""
    found = {k: Evaluation.model_validate(v) for k, v in evals["evaluations"].items()}
    samples = pool.samples
    repairs = pool.repairs
    sample_evals = [found[c.digest] for c in samples]
    greedy = pool.greedy
    greedy_eval = found[greedy.digest]
    designer_tokens = sum(d.answer.tokens for d in pool.designed if d.answer)
    designer_seconds = sum(d.answer.seconds for d in pool.designed if d.answer)
    n = len(samples)
    right = sum(bool(e.extra_ok) for e in sample_evals)
    k = min(draw, n)
    rng = random.Random(f"{seed}:{pool.name}")
    wins = dict.fromkeys(ARMS, 0.0)
    tokens = dict.fromkeys(ARMS, 0.0)
    seconds = dict.fromkeys(ARMS, 0.0)
    any_right = picked_when_any = repaired = 0
    for _ in range(draws):
        index = rng.sample(range(n), k)
        drawn = [sample_evals[i] for i in index]
        base_tokens = pool.copy_tokens + sum(_tokens(samples[i]) for i in index)
        base_seconds = sum(_seconds(samples[i]) for i in index)
        base_seconds += sum(found[d].seconds for d in {samples[i].digest for i in index})
        first = next((e for e in drawn if e.spec_ok), drawn[0])
        wins["spec"] += bool(first.extra_ok)
        tokens["spec"] += base_tokens
        seconds["spec"] += base_seconds
        choice = choose(drawn)
        assert choice.index is not None
        pick = drawn[choice.index]
        wins["agreement"] += bool(pick.extra_ok)
        tokens["agreement"] += base_tokens + designer_tokens
        seconds["agreement"] += base_seconds + designer_seconds
        if any(e.extra_ok for e in drawn):
            any_right += 1
            picked_when_any += bool(pick.extra_ok)
        extra_tokens = extra_seconds = 0.0
        fix = None if choice.spec_ok else repairs.get(samples[index[choice.index]].digest)
        if fix is not None:
            repaired += 1
            again = choose([*drawn, found[fix.digest]])
            assert again.index is not None
            pick = [*drawn, found[fix.digest]][again.index]
            extra_tokens, extra_seconds = _tokens(fix), _seconds(fix) + found[fix.digest].seconds
        wins["repair"] += bool(pick.extra_ok)
        tokens["repair"] += base_tokens + designer_tokens + extra_tokens
        seconds["repair"] += base_seconds + designer_seconds + extra_seconds
    reference = Evaluation.model_validate(evals["reference"])
    designer_total = int(evals["designer_tests"])
    out: dict[str, Any] = {
        "name": pool.name,
        "kind": pool.data["kind"],
        "held_out": bool(pool.data["held_out"]),
        "samples": n,
        "right_samples": right,
        "spec_ok_samples": sum(e.spec_ok for e in sample_evals),
        "trials": len(pool.spec.trials),
        "pass@1": pass_at(n, right, 1),
        f"pass@{k}": pass_at(n, right, k),
        "pass@k": pass_at(n, right, k),
        "greedy": float(bool(greedy_eval.extra_ok)),
        "pick_when_any": picked_when_any / any_right if any_right else None,
        "repair_draws": repaired / draws,
        "designer_accuracy": len(reference.designer_passed) / designer_total
        if designer_total
        else None,
        "reference_spec_ok": reference.spec_ok,
        "tokens": {"greedy": _tokens(greedy)},
        "seconds": {"greedy": round(_seconds(greedy) + greedy_eval.seconds, 2)},
    }
    for arm in ("spec", "agreement", "repair"):
        out[arm] = wins[arm] / draws
        out["tokens"][arm] = round(tokens[arm] / draws)
        out["seconds"][arm] = round(seconds[arm] / draws, 2)
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def table(rows: list[dict[str, Any]], k: int) -> str:
    lines = [
        f"| request | set | pass@1 | pass@{k} | greedy | spec filter | spec + agreement "
        "| + repair | pick right when one is | designer acc. | tokens greedy / flow "
        "| s greedy / flow |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {'held-out' if r['held_out'] else 'tuned'} | {_pct(r['pass@1'])} "
            f"| {_pct(r['pass@k'])} | {_pct(r['greedy'])} | {_pct(r['spec'])} "
            f"| {_pct(r['agreement'])} | {_pct(r['repair'])} | {_pct(r['pick_when_any'])} "
            f"| {_pct(r['designer_accuracy'])} | {r['tokens']['greedy']:,} / "
            f"{r['tokens']['repair']:,} | {r['seconds']['greedy']:.0f} / "
            f"{r['seconds']['repair']:.0f} |"
        )
    return "\n".join(lines)


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over requests, per set."""
    out: dict[str, Any] = {}
    for label, chosen in (
        ("tuned", [r for r in rows if not r["held_out"]]),
        ("held-out", [r for r in rows if r["held_out"]]),
        ("all", rows),
    ):
        if not chosen:
            continue
        figures: dict[str, Any] = {"requests": len(chosen)}
        for key in ("pass@1", "pass@k", *ARMS):
            figures[key] = statistics.fmean(r[key] for r in chosen)
        picks = [r["pick_when_any"] for r in chosen if r["pick_when_any"] is not None]
        figures["pick_when_any"] = statistics.fmean(picks) if picks else None
        accuracy = [r["designer_accuracy"] for r in chosen if r["designer_accuracy"] is not None]
        figures["designer_accuracy"] = statistics.fmean(accuracy) if accuracy else None
        figures["with_trials"] = sum(r["trials"] > 0 for r in chosen)
        figures["tokens"] = {a: statistics.fmean(r["tokens"][a] for r in chosen) for a in ARMS}
        figures["seconds"] = {a: statistics.fmean(r["seconds"][a] for r in chosen) for a in ARMS}
        out[label] = figures
    return out


def summary(sets: dict[str, Any], k: int) -> str:
    lines = []
    for label, f in sets.items():
        arms = ", ".join(f"{LABELS[a]} {f[a]:.0%}" for a in ARMS)
        lines.append(
            f"{label} ({f['requests']} requests): pass@1 {f['pass@1']:.0%}, pass@{k} "
            f"{f['pass@k']:.0%} (go/no-go: {100 * (f['pass@k'] - f['pass@1']):.0f} points); "
            f"{arms}; pick right when one is {_pct(f['pick_when_any'])}; designer tests "
            f"right {_pct(f['designer_accuracy'])}; requests with a trial test "
            f"{f['with_trials']}/{f['requests']}; tokens per request greedy "
            f"{f['tokens']['greedy']:,.0f}, flow {f['tokens']['repair']:,.0f}; seconds "
            f"greedy {f['seconds']['greedy']:,.0f}, flow {f['seconds']['repair']:,.0f}"
        )
    return "\n".join(lines)


async def _replay(args: argparse.Namespace) -> int:
    files = sorted(p for p in args.pool.glob("*.json") if not p.name.endswith(".eval.json"))
    if not files:
        print(f"error: no pool files in {args.pool}")
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="agents-replay-") as tmp:
        runner = await make_runner(Path(tmp))
        for path in files:
            pool = Pool.load(path)
            evals = await evaluate_pool(pool, runner, path.with_suffix(".eval.json"))
            rows.append(
                replay_request(pool, evals, draw=args.draw, draws=args.bootstrap, seed=args.seed)
            )
    k = min([args.draw, *(r["samples"] for r in rows)])
    sets = totals(rows)
    print(table(rows, k))
    print()
    print(summary(sets, k))
    if args.json:
        data = {"draw": args.draw, "bootstrap": args.bootstrap, "requests": rows, "totals": sets}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


def replay_main(args: argparse.Namespace) -> int:
    return asyncio.run(_replay(args))
