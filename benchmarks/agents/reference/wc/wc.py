"""Count lines, words and characters of files."""

import sys


def main(paths: list[str]) -> int:
    status = 0
    totals = [0, 0, 0]
    for path in paths:
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            print(f"wc.py: {path}: No such file", file=sys.stderr)
            status = 1
            continue
        counts = [text.count("\n"), len(text.split()), len(text)]
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        print(*counts, path)
    if len(paths) > 1:
        print(*totals, "total")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
