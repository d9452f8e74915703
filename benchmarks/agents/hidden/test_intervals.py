from intervals import merge


def test_examples():
    assert merge([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]
    assert merge([(1, 2), (2, 3)]) == [(1, 3)]


def test_unsorted_and_nested():
    assert merge([(8, 10), (1, 10), (2, 3)]) == [(1, 10)]
    assert merge([(5, 6), (1, 2)]) == [(1, 2), (5, 6)]


def test_gaps_are_kept():
    assert merge([(1, 2), (3, 4)]) == [(1, 2), (3, 4)]


def test_edges():
    assert merge([]) == []
    assert merge([(4, 4)]) == [(4, 4)]
