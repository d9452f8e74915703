"""A contacts book in a JSON file."""

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="contacts.py")
    parser.add_argument("--db", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add")
    add.add_argument("name")
    add.add_argument("email")
    find = commands.add_parser("find")
    find.add_argument("text")
    remove = commands.add_parser("remove")
    remove.add_argument("name")
    args = parser.parse_args(argv)

    db = Path(args.db)
    contacts: dict[str, str] = json.loads(db.read_text()) if db.exists() else {}
    if args.command == "add":
        contacts[args.name] = args.email
        db.write_text(json.dumps(contacts, indent=2))
    elif args.command == "find":
        needle = args.text.lower()
        for name in sorted(contacts):
            if needle in name.lower() or needle in contacts[name].lower():
                print(f"{name} <{contacts[name]}>")
    else:
        if args.name not in contacts:
            print(f"no contact named {args.name}", file=sys.stderr)
            return 1
        del contacts[args.name]
        db.write_text(json.dumps(contacts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
