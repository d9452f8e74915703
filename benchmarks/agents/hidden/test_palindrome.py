from palindrome import is_palindrome, longest_palindrome


def test_is_palindrome():
    assert is_palindrome("A man, a plan, a canal: Panama") is True
    assert is_palindrome("hello") is False
    assert is_palindrome("") is True
    assert is_palindrome("No 'x' in Nixon") is True
    assert is_palindrome("12321") is True
    assert is_palindrome("123") is False


def test_longest_palindrome():
    assert longest_palindrome("babad") == "bab"
    assert longest_palindrome("cbbd") == "bb"
    assert longest_palindrome("") == ""
    assert longest_palindrome("a") == "a"
    assert longest_palindrome("xAbAy") == "AbA"
    assert longest_palindrome("Aba") == "A"
    assert longest_palindrome("racecar level") == "racecar"
