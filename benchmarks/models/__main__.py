"""``python -m benchmarks.models``: the local models on this machine's CPU.

For each runtime and model: seconds from start to a healthy server, prompt and generation
tokens per second (a fresh prompt each time, so no prompt cache helps), the server's peak
RSS, and, through forgeline's own path (``forgeline.llm.local``, pydantic-ai, the output
types of ``forgeline.llm.outputs`` and the role instructions of ``pipeline.prompts``), how
often the planner's, architect's and coder's first answers validate and make sense.

Runtimes: ``xllamacpp`` (llama.cpp's own server, embedded in a prebuilt wheel: the one
forgeline uses) and ``llama-cpp-python`` (its FastAPI server, built from source; measured
for speed only, when installed). The machine's load average is printed with each row:
other work on the same cores makes every figure worse.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.exceptions import AgentRunError
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from forgeline.core.events import PlanItem
from forgeline.core.plan import PlanError, validate_plan
from forgeline.llm import local
from forgeline.llm.outputs import ArchitectureOutput, CodeChange, PlanOutput
from forgeline.pipeline import prompts

RUNTIMES = ("xllamacpp", "llama-cpp-python")
ROLES = ("planner", "architect", "coder")

# A prompt of about 400 tokens (code to read), and a question with a long answer.
SPEED_CONTEXT = "\n".join(
    f"def step_{n}(items: list[int]) -> list[int]:\n"
    f'    """Step {n}: keep the items divisible by {n + 2}, doubled."""\n'
    f"    return [2 * x for x in items if x % {n + 2} == 0]\n"
    for n in range(12)
)
SPEED_QUESTION = "Explain each function above in turn, one paragraph each, then suggest tests."

# Small requests, each with the plan the architect and the coder are shown (so every role
# is measured on the same input whatever the planner answered).
REQUESTS: tuple[tuple[str, tuple[PlanItem, ...]], ...] = (
    (
        "a python function add(a, b) in calc.py that returns the sum, with a pytest test",
        (
            PlanItem(id="a", title="calc module", description="add(a, b)", files=("calc.py",)),
            PlanItem(
                id="b",
                title="tests",
                description="pytest for add",
                depends_on=("a",),
                files=("test_calc.py",),
            ),
        ),
    ),
    (
        "build a todo CLI that stores items in todo.json",
        (
            PlanItem(
                id="a",
                title="todo CLI",
                description="argparse commands add, list and done; items in todo.json",
                files=("todo.py",),
            ),
            PlanItem(
                id="b",
                title="tests",
                description="pytest for add, list and done",
                depends_on=("a",),
                files=("test_todo.py",),
            ),
        ),
    ),
    (
        "a function is_palindrome(text) that ignores case and spaces, with tests",
        (
            PlanItem(
                id="a",
                title="palindrome module",
                description="is_palindrome(text) in palindrome.py",
                files=("palindrome.py",),
            ),
            PlanItem(
                id="b",
                title="tests",
                description="pytest for is_palindrome",
                depends_on=("a",),
                files=("test_palindrome.py",),
            ),
        ),
    ),
    (
        "a command line word counter: print the 10 most common words of a text file",
        (
            PlanItem(
                id="a",
                title="word counter",
                description="wordcount.py FILE prints the 10 most common words with their counts",
                files=("wordcount.py",),
            ),
            PlanItem(
                id="b",
                title="tests",
                description="pytest for the counting function",
                depends_on=("a",),
                files=("test_wordcount.py",),
            ),
        ),
    ),
)


# Words of the worked examples in PLANNER and ARCHITECT: none of the requests uses them.
EXAMPLE_WORDS = ("celsius", "fahrenheit", "temperature")


@dataclass
class Row:
    runtime: str
    model: str
    load_s: float = 0.0
    prompt_tps: list[float] = field(default_factory=list)
    gen_tps: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    valid: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """role -> (schema-valid, sensible, asked)."""
    load_avg: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    api_key: str
    stop: Callable[[], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(runtime: str, name: str, path: Path, log_dir: Path) -> Server:
    if runtime == "xllamacpp":
        server = local.start_server(name, path, log_path=log_dir / f"{name}.xllamacpp.log")
        return Server(server.process, server.base_url, server.api_key, server.stop)
    port = free_port()
    log = (log_dir / f"{name}.llama-cpp-python.log").open("wb")
    threads = str(local.threads())
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host",
         "127.0.0.1", "--port", str(port), "--n_ctx", str(local.CONTEXT_TOKENS),
         "--n_threads", threads, "--n_threads_batch", threads, "--model_alias", name],
        stdout=log, stderr=log, start_new_session=True,
        env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
    )  # fmt: skip
    log.close()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + local.START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/v1/models", timeout=5):
                break
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    return Server(process, base_url, "none", stop)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def chat(server: Server, content: str, max_tokens: int) -> tuple[float, int, int]:
    body = {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    request = urllib.request.Request(
        f"{server.base_url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {server.api_key}"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=900) as response:
        answer = json.load(response)
    elapsed = time.perf_counter() - started
    usage = answer["usage"]
    return elapsed, int(usage["prompt_tokens"]), int(usage["completion_tokens"])


def measure_speed(server: Server, row: Row, repeat: int, gen_tokens: int) -> None:
    """Prompt rate from a one-token answer; generation rate from the rest of a long one.

    Each request starts with a fresh nonce, so nothing of the prompt is cached.
    """
    for _ in range(repeat):
        prompt = f"[{secrets.token_hex(8)}]\n{SPEED_CONTEXT}\n{SPEED_QUESTION}"
        t_prompt, n_prompt, _ = chat(server, prompt, 1)
        prompt = f"[{secrets.token_hex(8)}]\n{SPEED_CONTEXT}\n{SPEED_QUESTION}"
        t_all, _, n_gen = chat(server, prompt, gen_tokens)
        row.prompt_tps.append(n_prompt / t_prompt)
        if n_gen > 1 and t_all > t_prompt:
            row.gen_tps.append((n_gen - 1) / (t_all - t_prompt))


# --------------------------------------------------------------------------- validity


def context(request: str, plan: tuple[PlanItem, ...]) -> str:
    lines = [f"Request: {request}", "Plan: as below"]
    lines += [f"- [{item.id}] {item.title}: {item.description}" for item in plan]
    return "\n".join(lines)


def sensible(role: str, output: BaseModel, plan: tuple[PlanItem, ...]) -> str | None:
    """Why the answer makes no sense for its role, or None."""
    dumped = output.model_dump_json().lower()
    if any(word in dumped for word in EXAMPLE_WORDS):
        return "copied the instructions' example"
    if isinstance(output, PlanOutput):
        try:
            validate_plan(output.items)
        except PlanError as exc:
            return str(exc)
        files = [f for item in output.items for f in item.files]
        if not any(f.endswith(".py") for f in files):
            return "no Python file in the plan"
        if not any("test" in f for f in files):
            return "no test file in the plan"
    elif isinstance(output, ArchitectureOutput):
        if not output.files or not output.decision.strip():
            return "no files or no decision"
        if output.run.kind != "web" and not output.run.command:
            return "no smoke command"
    elif isinstance(output, CodeChange):
        if not output.files:
            return "no files"
        wanted = set(plan[0].files)
        if not wanted & {f.path for f in output.files}:
            return f"does not write {', '.join(sorted(wanted))}"
        for f in output.files:
            if f.path.startswith("/") or ".." in f.path.split("/"):
                return f"path outside the repository: {f.path}"
            if f.path.endswith(".py"):
                try:
                    ast.parse(f.content)
                except SyntaxError as exc:
                    return f"{f.path} does not parse: {exc}"
    return None


def role_case(
    role: str, request: str, plan: tuple[PlanItem, ...]
) -> tuple[type[BaseModel], str, str]:
    if role == "planner":
        return PlanOutput, prompts.PLANNER, f"Request: {request}"
    if role == "architect":
        return ArchitectureOutput, prompts.ARCHITECT, context(request, plan)
    item = plan[0]
    prompt = (
        f"{context(request, plan)}\n\nImplement step [{item.id}] {item.title}: "
        f"{item.description}\nFiles: {', '.join(item.files)}\n\nCurrent files:\n"
        f"{prompts.files_block({})}"
    )
    return CodeChange, f"{prompts.CODER}\n\n{prompts.EDIT_FORMAT['whole']}", prompt


async def measure_validity(
    server: Server, name: str, row: Row, roles: Sequence[str], requests: int, verbose: bool
) -> None:
    provider = OpenAIProvider(base_url=f"{server.base_url}/v1", api_key=server.api_key)
    model = OpenAIChatModel(
        name, provider=provider, profile=local.LOCAL_PROFILE, settings=local.LOCAL_SETTINGS
    )
    try:
        for role in roles:
            ok = good = asked = 0
            for request, plan in REQUESTS[:requests]:
                output_type, instructions, prompt = role_case(role, request, plan)
                agent = Agent(
                    model,
                    output_type=output_type,
                    instructions=instructions,
                    retries={"output": 0, "tools": 0},  # the first answer is what counts
                )
                asked += 1
                started = time.perf_counter()
                try:
                    output = (await agent.run(prompt)).output
                except AgentRunError as exc:
                    verdict = f"invalid: {str(exc)[:200]}"
                else:
                    ok += 1
                    problem = sensible(role, output, plan)
                    good += problem is None
                    verdict = problem or "ok"
                    if verbose:
                        print(output.model_dump_json(indent=1)[:1500], file=sys.stderr)
                took = time.perf_counter() - started
                print(f"  {name} {role:9} {took:6.1f}s {verdict}", file=sys.stderr, flush=True)
            row.valid[role] = (ok, good, asked)
    finally:
        await provider.client.close()


# --------------------------------------------------------------------------- main


def runtime_installed(runtime: str) -> bool:
    module = "xllamacpp" if runtime == "xllamacpp" else "llama_cpp"
    return importlib.util.find_spec(module) is not None


def load_average() -> float:
    return os.getloadavg()[0]


def bench(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    log_dir = local.models_dir()
    for name in args.model:
        path = local.ensure_model(name)
        for runtime in args.runtime:
            row = Row(runtime, name)
            rows.append(row)
            if not runtime_installed(runtime):
                row.notes.append("not installed")
                continue
            row.load_avg.append(load_average())
            started = time.perf_counter()
            server = start(runtime, name, path, log_dir)
            row.load_s = time.perf_counter() - started
            try:
                if args.repeat:
                    measure_speed(server, row, args.repeat, args.gen_tokens)
                if runtime == "xllamacpp" and args.requests:
                    asyncio.run(
                        measure_validity(server, name, row, args.roles, args.requests, args.verbose)
                    )
                row.peak_rss_mb = peak_rss_mb(server.process.pid)
            finally:
                server.stop()
            row.load_avg.append(load_average())
            print(f"done {runtime} {name}", file=sys.stderr, flush=True)
    return rows


def fmt_rates(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{sum(values) / len(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def table(rows: list[Row], roles: Sequence[str]) -> str:
    head = ["runtime", "model", "load s", "prompt tok/s", "gen tok/s", "peak RSS MB"]
    head += [f"{role} valid/sensible" for role in roles] + ["load avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        if row.notes:
            cells = [row.runtime, row.model, *(["-"] * (len(head) - 3)), "; ".join(row.notes)]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        cells = [
            row.runtime,
            row.model,
            f"{row.load_s:.1f}",
            fmt_rates(row.prompt_tps),
            fmt_rates(row.gen_tps),
            f"{row.peak_rss_mb:.0f}",
        ]
        for role in roles:
            ok, good, asked = row.valid.get(role, (0, 0, 0))
            cells.append(f"{ok}/{asked}, {good}/{asked}" if asked else "-")
        cells.append(" → ".join(f"{v:.1f}" for v in row.load_avg))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.models", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--runtime", nargs="+", choices=RUNTIMES, default=list(RUNTIMES), metavar="RUNTIME"
    )
    parser.add_argument(
        "--model", nargs="+", choices=list(local.LOCAL_MODELS), default=list(local.LOCAL_MODELS)
    )
    parser.add_argument("--repeat", type=int, default=3, help="speed runs per row (0: none)")
    parser.add_argument("--gen-tokens", type=int, default=128, help="tokens per speed answer")
    parser.add_argument(
        "--requests", type=int, default=len(REQUESTS), help="requests per role (0: none)"
    )
    parser.add_argument("--roles", nargs="+", choices=ROLES, default=list(ROLES))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--verbose", action="store_true", help="print each answer to stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rows = bench(args)
    print(f"{date.today()}, {os.cpu_count()} CPUs, {local.threads()} threads")
    print(table(rows, args.roles))
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
