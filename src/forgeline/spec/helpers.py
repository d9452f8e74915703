"""The helpers every generated test file carries (``HELPERS``), as Python source.

Generated tests (the spec's checks and trials, the designer's asserts) are plain pytest
files that carry their helpers, so each runs on its own in any workspace and can land in
the repository as it is. What the helpers give the test code:

- ``find(name)``: the function or class ``name`` from the request's modules, imported
  when the test runs (a module that does not import fails that test, not the file).
- ``run(script, *args, input=None)``: ``python SCRIPT ARGS`` in the test's own temporary
  directory (its working directory), returning ``subprocess.CompletedProcess`` (text).
- ``http(method, path, body=None)``: a request to the web service, started for the test
  the way the request says (its factory, or its command line with a free port), or to
  the framework application it names, through the framework's test client:
  ``(status, body)``, the body parsed when it is JSON, else text. Redirects are not
  followed.

Every test runs in a fresh temporary directory and is stopped after ``LIMIT`` seconds.
The module constants (``ROOT``, ``MODULES``, ``SERVER``, ``LIMIT``) come first, written
by ``spec.checks.test_file``.
"""

from __future__ import annotations

import ast

HELPERS = r"""
@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def expire(signum, frame):
        raise TimeoutError(f"the test ran over {LIMIT} seconds")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        _stop_server()


def find(name):
    for module in MODULES:
        loaded = importlib.import_module(module)
        if hasattr(loaded, name):
            return getattr(loaded, name)
    raise AttributeError(f"none of the modules {MODULES} defines {name}")


def run(script, *args, input=None):
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        capture_output=True, text=True, input=input, timeout=LIMIT, check=False,
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
_SERVER_STATE = {}


def _decode(data, headers):
    text = data.decode("utf-8", "replace")
    if "json" in (headers.get("Content-Type") or ""):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def http(method, path, body=None):
    if body is None:
        data = b"" if method in ("POST", "PUT", "PATCH") else None
    else:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    if SERVER is not None and SERVER.get("app"):
        return _call_app(method, path, data)
    request = urllib.request.Request(_base_url() + path, data=data, method=method)
    if data:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, _decode(response.read(), response.headers)
    except urllib.error.HTTPError as error:
        return error.code, _decode(error.read(), error.headers)


def _call_app(method, path, data):
    app = getattr(importlib.import_module(SERVER["module"]), SERVER["app"])
    headers = {"Content-Type": "application/json"} if data else {}
    if hasattr(app, "test_client"):  # Flask
        response = app.test_client().open(path, method=method, data=data, headers=headers)
        return response.status_code, _decode(response.get_data(), response.headers)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        response = client.request(
            method, path, content=data, headers=headers, follow_redirects=False
        )
    return response.status_code, _decode(response.content, response.headers)


def _argument(name):
    if name == "host":
        return "127.0.0.1"
    if name == "port":
        return 0
    return str(Path.cwd() / f"{name}.json")


def _base_url():
    if "url" in _SERVER_STATE:
        return _SERVER_STATE["url"]
    if SERVER is None:
        raise RuntimeError("the request names no way to start its web service")
    if SERVER.get("factory"):
        factory = getattr(importlib.import_module(SERVER["module"]), SERVER["factory"])
        server = factory(*[_argument(p) for p in SERVER["params"]])
        threading.Thread(target=server.serve_forever, daemon=True).start()

        def stop():
            server.shutdown()
            server.server_close()

        _SERVER_STATE.update(url=f"http://127.0.0.1:{server.server_address[1]}", stop=stop)
        return _SERVER_STATE["url"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script, *args = SERVER["command"]
    process = subprocess.Popen(
        [sys.executable, str(ROOT / script), *(a.format(port=port) for a in args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _SERVER_STATE.update(url=f"http://127.0.0.1:{port}", stop=process.kill)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return _SERVER_STATE["url"]
        time.sleep(0.1)
    raise RuntimeError(f"{script} did not start serving on port {port}")


def _stop_server():
    stop = _SERVER_STATE.pop("stop", None)
    _SERVER_STATE.clear()
    if stop is not None:
        stop()


def check_file(path, importable):
    file = ROOT / path
    assert file.is_file(), f"{path} is missing"
    compile(file.read_text(encoding="utf-8"), path, "exec")
    if importable:
        importlib.import_module(path[:-3].replace("/", "."))


def _lookup(module, name):
    found = vars(module).get(name)
    if found is not None:
        return found, False
    for value in list(vars(module).values()):
        if inspect.isclass(value) and value.__module__ == module.__name__:
            raw = inspect.getattr_static(value, name, None)
            if raw is not None:
                plain = inspect.isfunction(raw)
                return getattr(value, name), plain
    return None, False


def check_callable(module, name, kind, params):
    loaded = importlib.import_module(module)
    found, method = _lookup(loaded, name)
    assert found is not None, f"{module}.py defines no {name}"
    if kind == "class":
        assert inspect.isclass(found), f"{name} is not a class"
    assert callable(found), f"{name} is not callable"
    if params is None:
        return
    try:
        signature = inspect.signature(found)
    except (TypeError, ValueError):
        return
    if method:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    mark = object()
    positional = [p for p in params if p[1] == "positional"]
    required = [mark for p in positional if p[2] is None]
    tries = [(required, {}), ([mark] * len(positional), {})]
    tries += [(required, {p[0]: mark}) for p in params if p[2] is not None]
    if any(p[1] == "var_positional" for p in params):
        tries.append(([mark] * (len(positional) + 2), {}))
    if any(p[1] == "var_keyword" for p in params):
        tries.append((required, {"forgeline_extra": mark}))
    stated = ", ".join(p[0] for p in params)
    for args, kwargs in tries:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            raise AssertionError(
                f"{name}{signature} cannot be called as {name}({stated}): {error}"
            ) from None


def check_commands(commands):
    Path("input.txt").write_text("alpha beta\nalpha\ngamma\n")
    Path("input.csv").write_text("name,age\nada,36\n")
    before = sorted(Path.cwd().iterdir())
    effect = False
    for script, args in commands:
        done = run(script, *args)
        shown = " ".join([script, *args])
        assert "Traceback (most recent call last)" not in done.stderr, (
            f"python {shown} crashed:\n{done.stderr[-2000:]}"
        )
        effect = effect or bool(done.stdout.strip() or done.stderr.strip() or done.returncode)
    effect = effect or sorted(Path.cwd().iterdir()) != before
    assert effect, "the command lines printed nothing, wrote no file and never failed"


def check_round_trip(script, storing, listing, value):
    given = " ".join([script, *storing])
    stored = run(script, *storing)
    assert stored.returncode == 0, f"python {given} failed:\n{stored.stderr[-2000:]}"
    shown = run(script, *listing)
    assert value in shown.stdout, (
        f"python {' '.join([script, *listing])} does not show {value!r}, stored by "
        f"python {given}; it printed:\n{shown.stdout[-1000:]}"
    )


def check_routes(routes):
    for method, path, fixed in routes:
        status, _ = http(method, path, {} if method in ("POST", "PUT", "PATCH") else None)
        assert 100 <= status < 600, f"{method} {path} gave no HTTP answer"
        assert not (fixed and status in (404, 405)), (
            f"{method} {path} answered {status}: the service has no such route"
        )
"""

IMPORTS = (
    "import contextlib",
    "import importlib",
    "import inspect",
    "import json",
    "import signal",
    "import socket",
    "import subprocess",
    "import sys",
    "import threading",
    "import time",
    "import urllib.error",
    "import urllib.request",
    "from pathlib import Path",
    "",
    "import pytest",
)


def _defined(source: str) -> frozenset[str]:
    tree = ast.parse(source)
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


#: The names the generated files define, which test code may use without importing them.
HELPER_NAMES = _defined(HELPERS + "\n".join(IMPORTS)) | {"ROOT", "MODULES", "SERVER", "LIMIT"}
