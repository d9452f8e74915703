import pytest
from roman import from_roman, to_roman


def test_examples():
    assert to_roman(4) == "IV"
    assert to_roman(9) == "IX"
    assert to_roman(40) == "XL"
    assert to_roman(1994) == "MCMXCIV"
    assert to_roman(3999) == "MMMCMXCIX"
    assert from_roman("MCMXCIV") == 1994
    assert from_roman("III") == 3


def test_round_trip():
    for number in range(1, 4000):
        assert from_roman(to_roman(number)) == number


def test_out_of_range():
    for bad in (0, -1, 4000):
        with pytest.raises(ValueError):  # noqa: PT011
            to_roman(bad)


def test_not_a_numeral():
    for bad in ("", "ABC", "12"):
        with pytest.raises(ValueError):  # noqa: PT011
            from_roman(bad)
