from vector import Vector


def test_arithmetic():
    assert Vector(1, 2) + Vector(3, 4) == Vector(4, 6)
    assert Vector(3, 4) - Vector(1, 2) == Vector(2, 2)
    assert Vector(1, 2) * 3 == Vector(3, 6)
    assert 3 * Vector(1, 2) == Vector(3, 6)


def test_length_and_fields():
    v = Vector(3, 4)
    assert abs(v) == 5
    assert (v.x, v.y) == (3, 4)


def test_equality_and_repr():
    assert Vector(1, 2) != Vector(2, 1)
    assert repr(Vector(1, 2)) == "Vector(1, 2)"
