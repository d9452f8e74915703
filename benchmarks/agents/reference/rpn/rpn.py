"""A reverse Polish notation calculator."""

import operator
import sys

OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def evaluate_rpn(expression: str) -> float:
    stack: list[float] = []
    for token in expression.split():
        if token in OPERATORS:
            if len(stack) < 2:
                raise ValueError(f"too few numbers for {token}")
            right, left = stack.pop(), stack.pop()
            if token == "/" and right == 0:
                raise ValueError("division by zero")
            stack.append(OPERATORS[token](left, right))
        else:
            try:
                stack.append(float(token))
            except ValueError:
                raise ValueError(f"unknown token {token!r}") from None
    if len(stack) != 1:
        raise ValueError("the expression must leave exactly one number")
    return stack[0]


def main(argv: list[str]) -> int:
    try:
        result = evaluate_rpn(" ".join(argv))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(int(result) if result == int(result) else result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
