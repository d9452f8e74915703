import pytest
from wrapper import wrap_text


def test_wrap():
    assert wrap_text("the quick brown fox", 10) == ["the quick", "brown fox"]
    assert wrap_text("the quick brown fox", 9) == ["the quick", "brown fox"]
    assert wrap_text("the quick brown fox", 8) == ["the", "quick", "brown", "fox"]
    assert wrap_text("a b c d", 3) == ["a b", "c d"]


def test_whitespace_collapses():
    assert wrap_text("  one\n\ttwo   three ", 20) == ["one two three"]


def test_long_words_and_empty():
    assert wrap_text("tiny enormousword x", 5) == ["tiny", "enormousword", "x"]
    assert wrap_text("", 5) == []
    assert wrap_text("   ", 5) == []


def test_bad_width():
    with pytest.raises(ValueError):  # noqa: PT011
        wrap_text("abc", 0)
