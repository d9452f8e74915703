"""Print a file's lines without repeats."""

import argparse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--count", action="store_true")
    args = parser.parse_args()
    with open(args.file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    groups: list[list[object]] = []
    if args.all:
        index: dict[str, list[object]] = {}
        for line in lines:
            if line in index:
                index[line][1] += 1  # type: ignore[operator]
            else:
                index[line] = [line, 1]
                groups.append(index[line])
    else:
        for line in lines:
            if groups and groups[-1][0] == line:
                groups[-1][1] += 1  # type: ignore[operator]
            else:
                groups.append([line, 1])
    for line, count in groups:
        print(f"{count} {line}" if args.count else line)


if __name__ == "__main__":
    main()
