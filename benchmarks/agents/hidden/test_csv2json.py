import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "csv2json.py"
CSV = 'name,city\nAda,London\n"Lovelace, Ada","New York"\n'
ROWS = [{"name": "Ada", "city": "London"}, {"name": "Lovelace, Ada", "city": "New York"}]


def run(cwd, *args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_rows_become_objects(tmp_path):
    (tmp_path / "people.csv").write_text(CSV)
    done = run(tmp_path, "people.csv")
    assert done.returncode == 0
    assert json.loads(done.stdout) == ROWS
    assert len(done.stdout.strip().splitlines()) == 1


def test_indent(tmp_path):
    (tmp_path / "people.csv").write_text(CSV)
    done = run(tmp_path, "people.csv", "--indent", "2")
    assert done.returncode == 0
    assert done.stdout.strip() == json.dumps(ROWS, indent=2)
