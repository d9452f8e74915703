import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "wc.py"


def wc(cwd, *args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_one_file(tmp_path):
    (tmp_path / "notes.txt").write_text("one two\nthree\n")
    done = wc(tmp_path, "notes.txt")
    assert done.returncode == 0
    assert done.stdout.strip() == "2 3 14 notes.txt"


def test_several_files_end_with_a_total(tmp_path):
    (tmp_path / "a.txt").write_text("a b c\n")
    (tmp_path / "b.txt").write_text("x\ny\nz\n")
    done = wc(tmp_path, "a.txt", "b.txt")
    assert done.returncode == 0
    assert done.stdout.strip().splitlines() == ["1 3 6 a.txt", "3 3 6 b.txt", "4 6 12 total"]


def test_missing_file(tmp_path):
    (tmp_path / "a.txt").write_text("a\n")
    done = wc(tmp_path, "nope.txt", "a.txt")
    assert done.returncode == 1
    assert "wc.py: nope.txt: No such file" in done.stderr
    assert "1 1 2 a.txt" in done.stdout
