import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "grep.py"


def grep(*args, cwd):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def sample(tmp_path):
    (tmp_path / "poem.txt").write_text("The cat sat\non the mat.\nA Cat? (a.c*t)\nend\n")
    return "poem.txt"


def test_plain_match(tmp_path):
    done = grep("cat", sample(tmp_path), cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["The cat sat"]


def test_ignore_case_and_count(tmp_path):
    name = sample(tmp_path)
    assert grep("-i", "CAT", name, cwd=tmp_path).stdout.splitlines() == [
        "The cat sat",
        "A Cat? (a.c*t)",
    ]
    assert grep("-c", "at", name, cwd=tmp_path).stdout.strip() == "3"
    assert grep("-c", "cat", name, cwd=tmp_path).stdout.strip() == "1"
    assert grep("-i", "-c", "cat", name, cwd=tmp_path).stdout.strip() == "2"


def test_not_a_regex(tmp_path):
    done = grep("a.c*t", sample(tmp_path), cwd=tmp_path)
    assert done.stdout.splitlines() == ["A Cat? (a.c*t)"]
    assert grep("c.t", sample(tmp_path), cwd=tmp_path).returncode == 1


def test_no_match_and_missing_file(tmp_path):
    none = grep("dog", sample(tmp_path), cwd=tmp_path)
    assert none.returncode == 1
    assert none.stdout == ""
    missing = grep("x", "nowhere.txt", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip()
