"""Palindromes."""


def is_palindrome(text: str) -> bool:
    kept = [c.lower() for c in text if c.isalnum()]
    return kept == kept[::-1]


def longest_palindrome(text: str) -> str:
    best = ""
    for start in range(len(text)):
        for end in range(len(text), start + len(best), -1):
            piece = text[start:end]
            if piece == piece[::-1]:
                best = piece
                break
    return best
