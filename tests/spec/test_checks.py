"""The generated checks fail the programs the request rules out, and only those."""

from __future__ import annotations

from pathlib import Path

from forgeline.sandbox.local import LocalSpawner
from forgeline.selection.candidate import Candidate, candidate_prompt
from forgeline.selection.execution import CandidateRunner, Evaluation, build_suite
from forgeline.spec import derive_spec

SLUGIFY = (
    'Write slugify.py with a function slugify(text: str) -> str. For example slugify("Hello, '
    'World!") == "hello-world".'
)
GOOD_SLUGIFY = (
    "import re\n\n\ndef slugify(text: str) -> str:\n"
    '    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")\n'
)


async def evaluate(tmp_path: Path, request: str, files: dict[str, str]) -> Evaluation:
    runner = CandidateRunner(LocalSpawner(), venv=None, scratch=tmp_path, timeout=120)
    return await runner.evaluate(Candidate(files=files), build_suite(derive_spec(request)))


async def test_a_right_program_passes(tmp_path: Path) -> None:
    result = await evaluate(tmp_path, SLUGIFY, {"slugify.py": GOOD_SLUGIFY})
    assert result.spec_ok
    assert result.spec_total == 3


async def test_a_wrong_example_fails_and_the_error_says_where(tmp_path: Path) -> None:
    bad = GOOD_SLUGIFY.replace('.strip("-")', "")
    result = await evaluate(tmp_path, SLUGIFY, {"slugify.py": bad})
    assert result.spec_failed == ("test_spec_examples.py::test_example_1",)
    assert "hello-world" in result.error


async def test_missing_parameters_and_files_fail(tmp_path: Path) -> None:
    two = GOOD_SLUGIFY.replace("(text: str)", "(text: str, sep: str)")
    result = await evaluate(tmp_path, SLUGIFY, {"slugify.py": two})
    assert "test_spec_interface.py::test_interface_2_signature_slugify" in (result.spec_failed)
    nothing = await evaluate(tmp_path, SLUGIFY, {"other.py": GOOD_SLUGIFY})
    assert nothing.spec_passed == 0


async def test_a_crashing_command_line_fails(tmp_path: Path) -> None:
    request = "Write todo.py: `python todo.py add TEXT...` adds an item; `python todo.py list`."
    crash = "import sys\nprint(sys.argv[5])\n"
    result = await evaluate(tmp_path, request, {"todo.py": crash})
    assert [t.split("::")[1] for t in result.spec_failed] == [
        "test_interface_2_commands",
        "test_interface_3_round_trip",
    ]
    assert "IndexError" in result.error


TODO = (
    "Write todo.py, keeping items in todo.json: `python todo.py add TEXT...` adds an item, "
    "`python todo.py list` prints them."
)
STORES = (
    "import json, sys\nfrom pathlib import Path\n\n"
    "path = Path('todo.json')\n"
    "items = json.loads(path.read_text()) if path.exists() else []\n"
    "if sys.argv[1] == 'add':\n"
    "    items.append(' '.join(sys.argv[2:]))\n"
    "    path.write_text(json.dumps(items))\n"
    "elif sys.argv[1] == 'list':\n"
    "    print('\\n'.join(items))\n"
)


async def test_what_a_command_stores_another_shows(tmp_path: Path) -> None:
    # the README's example: a CLI whose `list` printed its usage passed every other check
    works = await evaluate(tmp_path / "a", TODO, {"todo.py": STORES})
    assert works.spec_failed == () and works.spec_passed == 3
    forgets = STORES.replace("print('\\n'.join(items))", "print('Usage: todo.py add|list')")
    result = await evaluate(tmp_path / "b", TODO, {"todo.py": forgets})
    assert [t.split("::")[1] for t in result.spec_failed] == ["test_interface_3_round_trip"]
    assert "does not show 'kale', stored by python todo.py add kale" in result.error


async def test_a_route_whose_handler_crashes_fails(tmp_path: Path) -> None:
    request = (
        "Write app.py with make_server(host: str, port: int) returning an "
        "http.server.HTTPServer. GET /items/NAME answers 200 with the item."
    )
    server = (
        "from http.server import BaseHTTPRequestHandler, HTTPServer\n\n\n"
        "class Handler(BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        raise RuntimeError('boom')\n\n\n"
        "def make_server(host, port):\n"
        "    return HTTPServer((host, port), Handler)\n"
    )
    result = await evaluate(tmp_path, request, {"app.py": server})
    assert [t.split("::")[1] for t in result.spec_failed] == ["test_interface_3_routes"]


async def test_a_listing_command_must_work_before_anything_is_stored(tmp_path: Path) -> None:
    # seed 400 of the README's example: `list` read todo.json before any `add` made it,
    # which only the deployer's smoke run (`todo.py list` in a fresh directory) caught
    fresh_crash = STORES.replace(
        "items = json.loads(path.read_text()) if path.exists() else []\n",
        "items = json.loads(path.read_text()) if sys.argv[1] == 'list' or path.exists() else []\n",
    )
    result = await evaluate(tmp_path, TODO, {"todo.py": fresh_crash})
    assert [t.split("::")[1] for t in result.spec_failed] == ["test_interface_2_commands"]
    assert "python todo.py list crashed" in result.error and "FileNotFoundError" in result.error


def test_the_candidates_are_told_what_the_checks_run() -> None:
    # the two checks above, as the candidates' prompt states them: the model then writes
    # a `list` for an empty directory and an `add` that keeps the item, instead of guessing
    prompt = candidate_prompt(derive_spec(TODO))
    assert "`python todo.py list` works in a new, empty directory, before any other" in prompt
    assert "after `python todo.py add kale`, `python todo.py list` (a new process) prints kale" in (
        prompt
    )
    # a request with no command that stores and none without a value: nothing to add
    assert candidate_prompt(derive_spec(SLUGIFY)).count("\n- ") == 1


ADD_SERVICE = (
    "Write app.py, a web service with FastAPI: a module-level app = FastAPI() where GET "
    '/health answers {"status": "ok"} and GET /add?a=X&b=Y answers {"result": X + Y}.'
)
ADD_APP = (
    "from fastapi import FastAPI\n\napp = FastAPI()\n\n\n"
    '@app.get("/health")\ndef health():\n    return {"status": "ok"}\n\n\n'
    '@app.get("/add")\ndef add(a: int, b: int):\n    return {"result": a + b}\n'
)


async def test_a_framework_app_is_checked_through_its_test_client(tmp_path: Path) -> None:
    # the 1.5B model's answer to the FastAPI request: the query string copied into the
    # route's path, so GET /add?a=1&b=1 finds no route; the task completed with it
    works = await evaluate(tmp_path / "a", ADD_SERVICE, {"app.py": ADD_APP})
    assert works.spec_ok and works.spec_total == 3  # imports, routes, the /health example
    literal = ADD_APP.replace('@app.get("/add")', '@app.get("/add?a=X&b=Y")')
    result = await evaluate(tmp_path / "b", ADD_SERVICE, {"app.py": literal})
    assert [t.split("::")[1] for t in result.spec_failed] == ["test_interface_2_routes"]
    assert "GET /add?a=1&b=1 answered 404: the service has no such route" in result.error
