import subprocess
import sys
from pathlib import Path

import pytest
from tempconv import convert

SCRIPT = Path(__file__).resolve().parent / "tempconv.py"


def run(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_convert():
    assert convert(100, "c", "f") == pytest.approx(212)
    assert convert(32, "f", "c") == pytest.approx(0)
    assert convert(0, "c", "k") == pytest.approx(273.15)
    assert convert(0, "k", "f") == pytest.approx(-459.67)


def test_cli():
    assert run("100", "--from", "c", "--to", "f").stdout.strip() == "212.0"
    assert run("98.6", "--from", "f", "--to", "c").stdout.strip() == "37.0"
    assert run("0", "--from", "c", "--to", "k").stdout.strip() == "273.15"


def test_unknown_unit():
    assert run("1", "--from", "x", "--to", "c").returncode != 0
