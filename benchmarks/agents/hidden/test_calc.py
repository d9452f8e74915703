import subprocess
import sys
from pathlib import Path

from calc import evaluate

SCRIPT = Path(__file__).resolve().parent / "calc.py"


def calc(expression):
    return subprocess.run(
        [sys.executable, str(SCRIPT), expression],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_precedence_and_parentheses():
    assert evaluate("2 + 3 * 4") == 14
    assert evaluate("(2 + 3) * 4") == 20
    assert evaluate("10 - 4 - 3") == 3
    assert evaluate("-3 + 5") == 2


def test_division():
    assert evaluate("7 / 2") == 3.5
    assert evaluate("8 / 2") == 4


def test_cli_prints_results():
    assert calc("2 + 3 * 4").stdout.strip() == "14"
    assert calc("7 / 2").stdout.strip() == "3.5"
    assert calc("8 / 2").stdout.strip() == "4"


def test_cli_errors():
    for bad in ("1 / 0", "2 +", "abc"):
        done = calc(bad)
        assert done.returncode == 1
        assert done.stderr.startswith("error:")
