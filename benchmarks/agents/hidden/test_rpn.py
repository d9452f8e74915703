import subprocess
import sys
from pathlib import Path

import pytest
from rpn import evaluate_rpn

SCRIPT = Path(__file__).resolve().parent / "rpn.py"


def run(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_evaluate():
    assert evaluate_rpn("3 4 + 2 *") == 14
    assert evaluate_rpn("5 2 /") == 2.5
    assert evaluate_rpn("10 2 8 * + 3 -") == 23
    assert evaluate_rpn("2 3 -") == -1
    assert evaluate_rpn("1.5 2 *") == 3


def test_errors():
    for bad in ("1 +", "1 2", "1 x +", "4 0 /", ""):
        with pytest.raises(ValueError):  # noqa: PT011
            evaluate_rpn(bad)


def test_cli():
    done = run("3 4 + 2 *")
    assert (done.returncode, done.stdout.strip()) == (0, "14")
    assert run("5 2 /").stdout.strip() == "2.5"
    failed = run("4 0 /")
    assert failed.returncode == 1
    assert failed.stderr.startswith("error:")
