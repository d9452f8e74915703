"""Mean, median and mode."""

from collections import Counter


def mean(values: list[float]) -> float:
    if not values:
        raise ValueError("no values")
    return sum(values) / len(values)


def median(values: list[float]) -> float:
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def mode(values: list[float]) -> float:
    if not values:
        raise ValueError("no values")
    counts = Counter(values)
    best = max(counts.values())
    return min(v for v, c in counts.items() if c == best)
