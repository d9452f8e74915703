"""What the patterns read out of a request, and what they leave alone."""

from __future__ import annotations

from forgeline.spec import derive_spec


def codes(request: str) -> list[str]:
    return [t.code for t in derive_spec(request).trials]


def test_signatures_files_and_owners() -> None:
    spec = derive_spec(
        "Write roman.py with to_roman(number: int) -> str and from_roman(text: str) -> int. "
        "Also write util.py with a class Cache(capacity: int, clock=time.monotonic) where "
        "len(cache) counts the keys and clock() gives seconds."
    )
    assert [m.path for m in spec.modules] == ["roman.py", "util.py"]
    assert all(m.importable for m in spec.modules)
    rendered = {c.name: (c.module, c.render()) for c in spec.callables}
    assert rendered == {
        "to_roman": ("roman", "to_roman(number: int) -> str"),
        "from_roman": ("roman", "from_roman(text: str) -> int"),
        "Cache": ("util", "class Cache(capacity: int, clock=time.monotonic)"),
    }  # len() is a builtin in use, clock() a parameter


def test_names_of_standard_library_objects_are_not_the_programs() -> None:
    spec = derive_spec(
        "Write server.py with make_server(host: str, port: int) that returns an "
        "http.server.HTTPServer; the caller runs serve_forever(). GET /health answers 200."
    )
    assert [c.name for c in spec.callables] == ["make_server"]
    assert spec.server is not None and spec.server.factory == "make_server"
    assert [r.render() for r in spec.routes] == ["GET /health -> 200"]


def test_test_functions_in_quoted_pytest_output_are_not_the_programs() -> None:
    spec = derive_spec(
        "These tests fail: test_calc.py::test_add. Fix the code they test (calc.py).\n"
        "```\n    def test_add():\n>       assert add(2, 3) == 5\nE       assert -1 == 5\n```"
    )
    assert [m.path for m in spec.modules] == ["calc.py"]
    assert spec.callables == ()  # test_add() is the test's, add(2, 3) a use


def test_literal_examples_of_calls() -> None:
    request = (
        'Write text.py with slugify(text: str) and add(a, b). `slugify("Hello, World!")` '
        'gives `"hello-world"`, and it returns 5 for add(2, 3); slugify("!!!") == "".'
    )
    assert codes(request) == [
        'assert slugify("Hello, World!") == "hello-world"',
        "assert add(2, 3) == 5",
        'assert slugify("!!!") == ""',
    ]


def test_method_calls_without_an_object_are_not_examples() -> None:
    request = (
        "Write limiter.py with a class Limiter(limit: int). allow() returns True while "
        "fewer than limit calls were made. abs(Limiter(3)) == 3."
    )
    assert codes(request) == ["assert abs(Limiter(3)) == 3"]


def test_quoted_inputs_of_the_one_string_function() -> None:
    request = 'Write calc.py with evaluate(expression: str). "2 + 3 * 4" gives 14 ("-3 + 5" is 2).'
    assert codes(request) == [
        'assert evaluate("2 + 3 * 4") == 14',
        'assert evaluate("-3 + 5") == 2',
    ]


def test_command_lines_and_what_they_print() -> None:
    spec = derive_spec(
        "Write wc.py: `python wc.py FILE...` counts. `python wc.py notes.txt` prints "
        "`2 3 14 notes.txt`, and `python wc.py --version` prints 1.0. `python wc.py list` "
        "prints one line per file."
    )
    assert [c.render() for c in spec.commands] == [
        "python wc.py FILE...",
        "python wc.py notes.txt",
        "python wc.py --version",
        "python wc.py list",
    ]
    assert [m.importable for m in spec.modules] == [False]
    assert [t.code for t in spec.trials] == [
        "assert run('wc.py', 'notes.txt').stdout.strip() == '2 3 14 notes.txt'",
        "assert run('wc.py', '--version').stdout.strip() == '1.0'",
    ]  # "prints one line" is not a literal output


def test_routes_and_their_answers() -> None:
    spec = derive_spec(
        "Write app.py with make_server(host: str, port: int). GET /health answers 200 with "
        'the JSON {"status": "ok"}; GET /items/ID answers 200 with the item; any other '
        'path answers 404 with {"error": "not found"}.'
    )
    assert [r.path for r in spec.routes] == ["/health", "/items/ID"]
    assert codes(spec.request) == [
        "status, body = http('GET', '/health')\nassert status == 200\n"
        "assert body == {'status': 'ok'}",
        "status, body = http('GET', '/forgeline-no-such-path')\nassert status == 404\n"
        "assert body == {'error': 'not found'}",
    ]


def test_a_request_without_files_says_so() -> None:
    spec = derive_spec("Make me a todo app that remembers things.")
    assert not spec.checkable
    assert spec.notes == ("the request names no Python file: no file or signature is checked",)
