"""``python -m benchmarks.agents``: how well the agents build what users ask for.

For each request of the suite (``suite.py``), with one model: the full pipeline
(``forgeline run`` in a fresh git workspace with its own store) against the same model
asked once for all the files (``single_shot.py``), both judged by the request's hidden
acceptance tests (``hidden/``), copied in only after the run. Per request: pass or fail,
tokens (the ``llm.usage`` events), wall time and fixer rounds; then totals and pass rates.

Without ``--model`` forgeline chooses as it always does: ``--config``/the environment, else
the offline ``local:qwen2.5-coder-1.5b``. See benchmarks/README.md ("Agents").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.agents.report import summary, table, totals
from benchmarks.agents.runner import ArmName, Options, RequestResult, run_request
from benchmarks.agents.suite import SUITE, BenchRequest, select
from forgeline.config import MODEL_ROLES, Settings, load_settings
from forgeline.errors import ForgelineError
from forgeline.sandbox.bwrap import sandbox_available

ARMS: dict[str, tuple[ArmName, ...]] = {
    "both": ("single_shot", "pipeline"),
    "pipeline": ("pipeline",),
    "single-shot": ("single_shot",),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.agents",
        description="Agent quality: the full pipeline against a single shot of the same "
        "model, judged by hidden acceptance tests.",
    )
    parser.add_argument(
        "--model",
        metavar="PROVIDER:MODEL",
        help="the model for every role (as FORGELINE_MODELS__DEFAULT); default: forgeline's "
        "own choice (--config or the environment, else the offline local model)",
    )
    parser.add_argument("--config", type=Path, help="a forgeline.toml for every run")
    parser.add_argument("--requests", type=int, metavar="N", help="run the first N requests")
    parser.add_argument("--only", metavar="NAME,...", help="run these requests (see --list)")
    parser.add_argument(
        "--profile",
        metavar="TIER",
        help="forgeline's model tier for the pipeline (FORGELINE_PROFILE; default: chosen by "
        "the coder's model, small for a local model)",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        metavar="N",
        help="the tier's candidates for the pipeline (FORGELINE_PROFILES__<TIER>__CANDIDATES)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds per run (default 1800)"
    )
    parser.add_argument(
        "--model-timeout",
        type=float,
        metavar="S",
        help="forgeline's model_timeout, seconds one model request may take "
        "(FORGELINE_MODEL_TIMEOUT; default: forgeline's, 120). A local model on a few "
        "cores needs more",
    )
    parser.add_argument(
        "--test-timeout", type=float, default=120, help="seconds for the hidden tests"
    )
    parser.add_argument(
        "--arms",
        choices=("both", "pipeline", "single-shot"),
        default="both",
        help="which way(s) to build each request (default both)",
    )
    parser.add_argument("--mode", choices=("event", "sequential"), help="forgeline's --mode")
    parser.add_argument("--max-fix-rounds", type=int, help="forgeline's --max-fix-rounds")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--keep", action="store_true", help="keep the workspaces (their directory is printed)"
    )
    parser.add_argument("--list", action="store_true", help="list the requests and exit")
    return parser.parse_args(argv)


def model_label(options: Options) -> tuple[str, list[str], str]:
    """What the runs will use, as one string, the local models among it, and the tier
    (with its settings) the pipeline will follow."""
    with tempfile.TemporaryDirectory() as nowhere:
        overrides = {"profile": options.profile} if options.profile else {}
        settings: Settings = load_settings(Path(nowhere), options.config, **overrides)
    models = settings.models
    if options.model:
        models = models.model_copy(update={"default": options.model})
    local = [f"local:{settings.local_model}"]
    chains = {role: ", ".join(models.for_role(role) or local) for role in MODEL_ROLES}
    distinct = set(chains.values())
    if len(distinct) == 1:
        label = distinct.pop()
    else:
        label = "; ".join(f"{role}={chain}" for role, chain in chains.items())
    names = sorted(
        {
            spec.strip().removeprefix("local:")
            for chain in chains.values()
            for spec in chain.split(",")
            if spec.strip().startswith("local:")
        }
    )
    tier, profile = settings.tier(chains["coder"])
    options.tier = tier
    candidates = options.candidates or profile.candidates
    plans = "every request" if profile.plan == "always" else "multi-module requests"
    tier_text = (
        f"{tier}: {candidates} candidate(s), {profile.designers} designer(s), plans "
        f"{plans}, {'a' if profile.review else 'no'} review, {profile.repair_rounds} repair "
        f"round(s), tools {'on' if profile.tools else 'off'}"
    )
    return label, names, tier_text


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(local_models: list[str]) -> dict[str, Any]:
    """The machine and versions the figures were taken on."""
    versions = {
        "forgeline": _version("forgeline"),
        "python": platform.python_version(),
        "pydantic-ai-slim": _version("pydantic-ai-slim"),
        "pytest": _version("pytest"),
    }
    if local_models:
        versions["xllamacpp"] = _version("xllamacpp")
    gpu = shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()
    machine: dict[str, Any] = {
        "cores": len(os.sched_getaffinity(0)),
        "gpu": "NVIDIA device present" if gpu else "none",
        "platform": platform.platform(terse=True),
        "versions": {k: v for k, v in versions.items() if v},
    }
    if local_models:
        from forgeline.llm.local import threads

        machine["local_threads"] = threads()  # FORGELINE_LOCAL_THREADS, else the cores
    return machine


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for r in SUITE:
            print(f"{r.name:10} {r.kind:8} {r.request}")
        return 0
    try:
        chosen: list[BenchRequest] = select(args.requests, args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not chosen:
        print("error: no requests selected", file=sys.stderr)
        return 2

    reason = sandbox_available()
    options = Options(
        model=args.model,
        config=args.config.resolve() if args.config else None,
        profile=args.profile,
        candidates=args.candidates,
        model_timeout=args.model_timeout,
        timeout=args.timeout,
        test_timeout=args.test_timeout,
        mode=args.mode,
        max_fix_rounds=args.max_fix_rounds,
        unsafe_no_sandbox=reason is not None,
        keep=args.keep,
    )
    try:
        label, local_models, tier = model_label(options)
        if local_models:  # fail fast, with forgeline's install hint, before any run
            from forgeline.llm.local import ensure_model

            for name in local_models:
                ensure_model(name)
    except ForgelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    arms = ARMS[args.arms]
    env = environment(local_models)
    sandbox = "bubblewrap" if reason is None else f"none (--unsafe-no-sandbox: {reason})"

    print(f"agent benchmark, {date.today().isoformat()}: {len(chosen)} request(s)")
    print(f"model      {label}")
    print(f"sandbox    {sandbox}")
    print(f"tier       {tier}")
    model_timeout = "forgeline's" if args.model_timeout is None else f"{args.model_timeout:g}s"
    print(f"limits     {args.timeout:g}s per run, model timeout {model_timeout}")
    print(
        f"machine    {env['cores']} core(s), GPU: {env['gpu']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + (f"; local model threads {env['local_threads']}" if "local_threads" in env else "")
    )
    sys.stdout.flush()

    signal.signal(signal.SIGTERM, _interrupt)  # clean up as on Ctrl-C
    root = Path(tempfile.mkdtemp(prefix="agents-bench-"))
    record = Record(args, label, sandbox, env, arms, tier)
    results: list[RequestResult] = []
    interrupted = False
    try:
        for number, request in enumerate(chosen, 1):
            result = run_request(request, root, options, arms)
            results.append(result)
            print(f"[{number}/{len(chosen)}] {_progress(result)}", flush=True)
            record.write(results, of=len(chosen))  # a stopped run keeps what it finished
    except KeyboardInterrupt:
        interrupted = True
        print(
            f"interrupted: the run in progress was stopped; {len(results)} of "
            f"{len(chosen)} request(s) finished",
            file=sys.stderr,
        )
    finally:
        if options.keep:
            print(f"workspaces kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    if results:
        print()
        print(table(results))
        print()
        print(summary(results))
    return 130 if interrupted else 0


class Record:
    """The ``--json`` file: written again after every request, so that an interrupted run
    keeps the figures of the requests it finished (``finished`` of ``requests``)."""

    def __init__(
        self,
        args: argparse.Namespace,
        label: str,
        sandbox: str,
        env: dict[str, Any],
        arms: tuple[ArmName, ...],
        tier: str,
    ) -> None:
        self.path: Path | None = args.json
        self.head = {
            "date": date.today().isoformat(),
            "model": label,
            "sandbox": sandbox,
            "tier": tier,
            "candidates": args.candidates,
            "machine": env,
            "options": {
                "timeout": args.timeout,
                "model_timeout": args.model_timeout,
                "test_timeout": args.test_timeout,
                "mode": args.mode,
                "max_fix_rounds": args.max_fix_rounds,
                "arms": list(arms),
            },
        }
        self.arms = arms

    def write(self, results: list[RequestResult], *, of: int) -> None:
        if self.path is None:
            return
        data = {
            **self.head,
            "requests": of,
            "finished": len(results),
            "results": [r.as_dict() for r in results],
            "totals": {arm: totals(results, arm).as_dict() for arm in self.arms},
        }
        self.path.write_text(json.dumps(data, indent=2) + "\n")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _progress(result: RequestResult) -> str:
    parts = [f"{result.name} ({result.kind}):"]
    for arm, label in ((result.single_shot, "single shot"), (result.pipeline, "pipeline")):
        if arm is None:
            continue
        verdict = "pass" if arm.passed else "FAIL"
        text = (
            f"{label} {verdict} {arm.tests_passed}/{arm.tests_total} "
            f"[{arm.status}] {arm.tokens:,} tokens {arm.wall_s:.1f}s"
        )
        if arm.arm == "pipeline":
            text += f" {arm.fix_rounds} fixer round(s)"
        if arm.note and not arm.passed:
            text += f" ({arm.note[:160]})"
        parts.append(text)
    return " ".join(parts[:1]) + " " + "; ".join(parts[1:])


if __name__ == "__main__":
    sys.exit(main())
