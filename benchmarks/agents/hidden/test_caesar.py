from caesar import decode, encode


def test_encode():
    assert encode("abc", 1) == "bcd"
    assert encode("xyz", 3) == "abc"
    assert encode("Hello, World!", 13) == "Uryyb, Jbeyq!"


def test_decode_reverses_encode():
    text = "The quick brown fox jumps over the lazy dog 123."
    for shift in (0, 1, 7, 25, 26, 30):
        assert decode(encode(text, shift), shift) == text


def test_negative_shift():
    assert encode("a", -1) == "z"
