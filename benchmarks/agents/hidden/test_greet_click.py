import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from greet import main

SCRIPT = Path(__file__).resolve().parent / "greet.py"


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_hello():
    result = run("Ada")
    assert result.exit_code == 0
    assert result.output == "Hello, Ada!\n"


def test_shout():
    assert run("Ada", "--shout").output == "HELLO, ADA!\n"


def test_times():
    assert run("Bo", "--times", "3").output == "Hello, Bo!\n" * 3


def test_greeting():
    assert run("Cy", "--greeting", "Hi").output == "Hi, Cy!\n"


def test_times_below_one_is_a_usage_error():
    assert run("Bo", "--times", "0").exit_code == 2
    assert run("Bo", "--times", "x").exit_code == 2


def test_a_missing_name_is_a_usage_error():
    assert run().exit_code == 2


def test_the_script_runs():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "Di", "--shout"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout == "HELLO, DI!\n"
