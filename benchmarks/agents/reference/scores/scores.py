"""A high-score table kept in a JSON file."""

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add")
    add.add_argument("name")
    add.add_argument("score")
    top = sub.add_parser("top")
    top.add_argument("n", type=int)
    sub.add_parser("reset")
    args = parser.parse_args()
    db = Path(args.db)
    scores: dict[str, int] = json.loads(db.read_text()) if db.is_file() else {}
    if args.command == "add":
        try:
            score = int(args.score)
        except ValueError:
            print(f"scores.py: not an integer: {args.score}", file=sys.stderr)
            return 1
        scores[args.name] = max(score, scores.get(args.name, score))
    elif args.command == "top":
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        for rank, (name, score) in enumerate(ranked[: args.n], 1):
            print(f"{rank}. {name} {score}")
        return 0
    else:
        scores = {}
    db.write_text(json.dumps(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
