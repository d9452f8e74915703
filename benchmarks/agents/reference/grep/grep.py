"""Print the lines of a file that contain a text."""

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-i", action="store_true", dest="ignore_case")
    parser.add_argument("-c", action="store_true", dest="count")
    parser.add_argument("pattern")
    parser.add_argument("file")
    args = parser.parse_args()
    try:
        with open(args.file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        print(f"grep.py: {args.file}: No such file", file=sys.stderr)
        return 2
    pattern = args.pattern.lower() if args.ignore_case else args.pattern
    matches = [line for line in lines if pattern in (line.lower() if args.ignore_case else line)]
    if args.count:
        print(len(matches))
    else:
        for line in matches:
            print(line)
    return 0 if matches else 1


if __name__ == "__main__":
    sys.exit(main())
