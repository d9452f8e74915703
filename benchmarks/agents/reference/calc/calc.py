"""An arithmetic calculator: + - * / and parentheses over integers."""

import re
import sys

TOKEN = re.compile(r"\s*(?:(\d+)|(.))")


def _tokens(text: str) -> list[str]:
    out = []
    for number, op in TOKEN.findall(text):
        if number:
            out.append(number)
        elif op.strip():
            if op not in "+-*/()":
                raise ValueError(f"unexpected {op!r}")
            out.append(op)
    return out


def evaluate(expression: str) -> int | float:
    tokens = _tokens(expression)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError("unexpected end of expression")
        pos += 1
        return tokens[pos - 1]

    def expr() -> float:
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value

    def term() -> float:
        value = factor()
        while peek() in ("*", "/"):
            if take() == "*":
                value *= factor()
            else:
                divisor = factor()
                if divisor == 0:
                    raise ZeroDivisionError("division by zero")
                value /= divisor
        return value

    def factor() -> float:
        token = take()
        if token == "-":
            return -factor()
        if token == "+":
            return factor()
        if token == "(":
            value = expr()
            if take() != ")":
                raise ValueError("missing )")
            return value
        if token.isdigit():
            return int(token)
        raise ValueError(f"unexpected {token!r}")

    result = expr()
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos]!r}")
    if isinstance(result, float) and result.is_integer():
        return int(result)
    return result


def main(argv: list[str]) -> int:
    try:
        print(evaluate(" ".join(argv)))
    except (ValueError, ZeroDivisionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
