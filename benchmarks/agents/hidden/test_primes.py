import pytest
from primes import factorize, is_prime, primes_up_to


def test_is_prime():
    assert [k for k in range(-3, 20) if is_prime(k)] == [2, 3, 5, 7, 11, 13, 17, 19]
    assert is_prime(7919) is True
    assert is_prime(7917) is False


def test_primes_up_to():
    assert primes_up_to(10) == [2, 3, 5, 7]
    assert primes_up_to(2) == [2]
    assert primes_up_to(1) == []
    assert len(primes_up_to(100)) == 25


def test_factorize():
    assert factorize(12) == [2, 2, 3]
    assert factorize(13) == [13]
    assert factorize(360) == [2, 2, 2, 3, 3, 5]
    assert factorize(2 * 9973) == [2, 9973]
    for bad in (1, 0, -5):
        with pytest.raises(ValueError):  # noqa: PT011
            factorize(bad)
