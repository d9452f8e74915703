import pytest
from fizzbuzz import fizzbuzz


def test_first_numbers():
    assert fizzbuzz(5) == ["1", "2", "Fizz", "4", "Buzz"]
    assert fizzbuzz(1) == ["1"]


def test_fizzbuzz_at_15():
    out = fizzbuzz(30)
    assert len(out) == 30
    assert out[14] == "FizzBuzz"
    assert out[29] == "FizzBuzz"
    assert out[8] == "Fizz"
    assert out[19] == "Buzz"
    assert out[12] == "13"


def test_zero_and_negative():
    assert fizzbuzz(0) == []
    with pytest.raises(ValueError):  # noqa: PT011
        fizzbuzz(-1)
