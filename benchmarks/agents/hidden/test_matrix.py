import pytest
from matrix import Matrix


def test_shape_and_rows():
    m = Matrix([[1, 2, 3], [4, 5, 6]])
    assert m.shape == (2, 3)
    assert m.rows == [[1, 2, 3], [4, 5, 6]]


def test_bad_rows():
    for rows in ([], [[]], [[1, 2], [3]]):
        with pytest.raises(ValueError):  # noqa: PT011
            Matrix(rows)


def test_add_and_equality():
    a = Matrix([[1, 2], [3, 4]])
    b = Matrix([[10, 20], [30, 40]])
    assert a + b == Matrix([[11, 22], [33, 44]])
    assert a != b
    with pytest.raises(ValueError):  # noqa: PT011
        a + Matrix([[1, 2, 3]])


def test_product():
    a = Matrix([[1, 2], [3, 4]])
    b = Matrix([[5], [6]])
    assert a @ b == Matrix([[17], [39]])
    assert (a @ b).shape == (2, 1)
    with pytest.raises(ValueError):  # noqa: PT011
        b @ a


def test_transpose():
    m = Matrix([[1, 2, 3], [4, 5, 6]])
    t = m.transpose()
    assert t == Matrix([[1, 4], [2, 5], [3, 6]])
    assert t.shape == (3, 2)
    assert m == Matrix([[1, 2, 3], [4, 5, 6]])
