"""Print a CSV file as a JSON array of objects."""

import argparse
import csv
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--indent", type=int, default=None)
    args = parser.parse_args()
    with open(args.file, newline="") as f:
        rows = list(csv.DictReader(f))
    print(json.dumps(rows, indent=args.indent))


if __name__ == "__main__":
    main()
