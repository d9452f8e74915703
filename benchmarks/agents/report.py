"""The agent benchmark's table and totals, as Markdown (pasteable into the README)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.agents.runner import ArmName, ArmResult, RequestResult
from benchmarks.agents.suite import BY_NAME

ARM_LABELS: tuple[tuple[ArmName, str], ...] = (
    ("single_shot", "single shot"),
    ("pipeline", "pipeline"),
)
HEADER = (
    "| request | kind | single shot | tokens | s | pipeline | tokens | s | fixer rounds | task |"
)
RULE = "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |"


def _hidden(arm: ArmResult | None) -> str:
    if arm is None:
        return "-"
    verdict = "pass" if arm.passed else "FAIL"
    return f"{verdict} {arm.tests_passed}/{arm.tests_total}"


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


@dataclass(frozen=True)
class ArmTotals:
    runs: int
    passed: int
    tokens: int
    input_tokens: int
    output_tokens: int
    calls: int
    wall_s: float
    fix_rounds: int
    fixed: int
    statuses: dict[str, int]

    @property
    def pass_rate(self) -> float:
        return self.passed / self.runs if self.runs else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "passed": self.passed,
            "pass_rate": round(self.pass_rate, 4),
            "tokens": self.tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "calls": self.calls,
            "wall_s": round(self.wall_s, 2),
            "fix_rounds": self.fix_rounds,
            "fixed_by_fixer": self.fixed,
            "statuses": self.statuses,
        }


def totals(results: Sequence[RequestResult], arm: ArmName) -> ArmTotals:
    arms = [a for r in results if (a := getattr(r, arm)) is not None]
    statuses: dict[str, int] = {}
    for a in arms:
        statuses[a.status] = statuses.get(a.status, 0) + 1
    return ArmTotals(
        runs=len(arms),
        passed=sum(a.passed for a in arms),
        tokens=sum(a.tokens for a in arms),
        input_tokens=sum(a.input_tokens for a in arms),
        output_tokens=sum(a.output_tokens for a in arms),
        calls=sum(a.calls for a in arms),
        wall_s=sum(a.wall_s for a in arms),
        fix_rounds=sum(a.fix_rounds for a in arms),
        fixed=sum(a.fixed for a in arms),
        statuses=statuses,
    )


def _rate(t: ArmTotals) -> str:
    if not t.runs:
        return "-"
    return f"{t.passed}/{t.runs} ({t.pass_rate:.0%})"


def table(results: Sequence[RequestResult]) -> str:
    """One row per request, then a total row."""
    lines = [HEADER, RULE]
    for r in results:
        s, p = r.single_shot, r.pipeline
        lines.append(
            f"| {r.name} | {r.kind} | {_hidden(s)} | {_num(s.tokens if s else None)} "
            f"| {_num(s.wall_s if s else None, 1)} | {_hidden(p)} "
            f"| {_num(p.tokens if p else None)} | {_num(p.wall_s if p else None, 1)} "
            f"| {p.fix_rounds if p else '-'} | {p.status if p else '-'} |"
        )
    single, pipe = totals(results, "single_shot"), totals(results, "pipeline")
    completed = pipe.statuses.get("completed", 0)
    cells = [f"**total** | {len(results)}"]
    cells.append(
        f"{_rate(single)} | {_num(single.tokens)} | {_num(single.wall_s, 1)}"
        if single.runs
        else "- | - | -"
    )
    cells.append(
        f"{_rate(pipe)} | {_num(pipe.tokens)} | {_num(pipe.wall_s, 1)} | {pipe.fix_rounds} "
        f"| {completed}/{pipe.runs} completed"
        if pipe.runs
        else "- | - | - | - | -"
    )
    lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def held_out_split(results: Sequence[RequestResult]) -> str:
    """Pass rates of the tuned and the held-out requests apart (empty without held-out)."""
    held = [r for r in results if BY_NAME[r.name].held_out]
    if not held:
        return ""
    tuned = [r for r in results if not BY_NAME[r.name].held_out]
    parts = []
    for arm, label in ARM_LABELS:
        rates = [
            f"{name} {_rate(totals(chosen, arm))}"
            for name, chosen in (("tuned", tuned), ("held-out", held))
            if totals(chosen, arm).runs
        ]
        if rates:
            parts.append(f"{label}: {', '.join(rates)}")
    return "; ".join(parts)


def summary(results: Sequence[RequestResult]) -> str:
    """The headline figures under the table."""
    lines: list[str] = []
    for arm, label in ARM_LABELS:
        t = totals(results, arm)
        if not t.runs:
            continue
        line = (
            f"{label}: {_rate(t)} pass the hidden tests; {t.tokens:,} tokens "
            f"({t.input_tokens:,} in, {t.output_tokens:,} out, {t.calls} calls, "
            f"{t.tokens // t.runs:,} per request); {t.wall_s:,.1f} s "
            f"({t.wall_s / t.runs:,.1f} s per request)"
        )
        if arm == "pipeline":
            line += f"; {t.fix_rounds} fixer round(s), {t.fixed} task(s) fixed by the fixer"
        lines.append(line)
    if split := held_out_split(results):
        lines.append(split)
    return "\n".join(lines)
