"""Roman numerals."""

VALUES = [
    (1000, "M"),
    (900, "CM"),
    (500, "D"),
    (400, "CD"),
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (9, "IX"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
]
DIGITS = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def to_roman(number: int) -> str:
    if not 1 <= number <= 3999:
        raise ValueError("only 1..3999 can be written")
    out = []
    for value, letters in VALUES:
        count, number = divmod(number, value)
        out.append(letters * count)
    return "".join(out)


def from_roman(text: str) -> int:
    if not text or any(c not in DIGITS for c in text):
        raise ValueError(f"not a roman numeral: {text!r}")
    total = 0
    for i, c in enumerate(text):
        value = DIGITS[c]
        if i + 1 < len(text) and DIGITS[text[i + 1]] > value:
            total -= value
        else:
            total += value
    return total
