import pytest
from stats import mean, median, mode


def test_mean():
    assert mean([1, 2, 3, 4]) == 2.5


def test_median():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5


def test_mode_smallest_on_a_tie():
    assert mode([1, 2, 2, 3]) == 2
    assert mode([3, 3, 1, 1, 2]) == 1


def test_empty_lists():
    for function in (mean, median, mode):
        with pytest.raises(ValueError):  # noqa: PT011
            function([])
