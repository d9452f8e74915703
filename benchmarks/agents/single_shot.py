"""The baseline: the same model asked once for the whole project, with no pipeline.

``python -m benchmarks.agents.single_shot --workspace DIR --request-file F --out R.json``
resolves the coder's model exactly as forgeline does (``--config FILE``, then the
environment, e.g. ``FORGELINE_MODELS__DEFAULT``; nothing configured: the offline local
model), asks it once for every file of the request as whole files, the way forgeline's
coder would ask that model for them (``[coder] edit_format``: Markdown text for a local
model, else the ``CodeChange`` structured output; no output retries, no tools, no tests
run, no fixing), writes the answer into the workspace (paths confined to it, as the patch
engine does) and commits it. The result (files, tokens, what went wrong) goes to ``--out`` as JSON.

It runs as a process of its own, like ``forgeline run``, so the benchmark can time it and
stop it the same way, and a local model's server is started the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic_ai import Agent, capture_run_messages
from pydantic_ai.messages import ModelMessage, ModelResponse

from forgeline.config import load_settings
from forgeline.errors import ForgelineError
from forgeline.llm.gateway import build_chain, has_local
from forgeline.llm.outputs import CodeChange, change_output
from forgeline.pipeline.prompts import answer_format
from forgeline.workspace.git import GitWorkspace, confined_path

INSTRUCTIONS = """You are a programmer. Build the user's request in one answer: every \
file the project needs, including its pytest tests, with paths relative to the repository \
root. Python files must be valid."""


def _usage(messages: Sequence[ModelMessage]) -> dict[str, int]:
    responses = [m for m in messages if isinstance(m, ModelResponse)]
    return {
        "calls": len(responses),
        "input_tokens": sum(m.usage.input_tokens for m in responses),
        "output_tokens": sum(m.usage.output_tokens for m in responses),
    }


async def single_shot(request: str, workspace: Path, config: Path | None) -> dict[str, Any]:
    """Ask once, write what came back; never raises for the model's failures."""
    repository = GitWorkspace(workspace)
    await repository.ensure()
    settings = load_settings(repository.path, config)
    chain = settings.models.for_role("coder") or [f"local:{settings.local_model}"]
    result: dict[str, Any] = {
        "model": ", ".join(chain),
        "status": "error",
        "error": "",
        "files": [],
        "calls": 0,
        "input_tokens": 0,
        "output_tokens": 0,
    }
    edit_format = "files" if settings.coder.format_for(has_local(chain)) == "files" else "whole"
    agent = Agent(
        build_chain(chain, settings),
        output_type=change_output(edit_format),
        instructions=f"{INSTRUCTIONS} {answer_format(edit_format)}",
        retries={"output": 0, "tools": 0},
        model_settings={"timeout": settings.model_timeout},
    )
    with capture_run_messages() as messages:
        try:
            answer: CodeChange = (await agent.run(f"Request: {request}")).output
        except Exception as exc:  # any model failure is a failed attempt, not a crash
            result |= _usage(messages)
            result |= {"status": "invalid", "error": f"{type(exc).__name__}: {exc}"[:2000]}
            return result
    result |= _usage(messages)
    written: list[str] = []
    problems: list[str] = []
    for file in answer.files:
        try:
            target = confined_path(repository.path, file.path)
        except ForgelineError as exc:
            problems.append(str(exc))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(file.content, encoding="utf-8")
        written.append(str(target.relative_to(repository.path)))
    if written:
        await repository.commit("single shot", written)
    result |= {
        "status": "answered" if written else "empty",
        "files": written,
        "error": "; ".join(problems)[:2000],
    }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agents.single_shot")
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--request-file", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args(argv)
    request = args.request_file.read_text(encoding="utf-8")
    try:
        result = asyncio.run(single_shot(request, args.workspace, args.config))
    except ForgelineError as exc:  # configuration, git: the benchmark reports it
        result = {"status": "error", "error": str(exc)[:2000]}
    args.out.write_text(json.dumps(result, indent=2))
    return 0 if result["status"] != "error" else 1


if __name__ == "__main__":
    sys.exit(main())
