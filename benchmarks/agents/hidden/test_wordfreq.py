from wordfreq import top_words


def test_most_frequent_first():
    assert top_words("the cat and the hat", 2) == [("the", 2), ("and", 1)]


def test_case_and_punctuation_are_ignored():
    assert top_words("Go, go! GO? stop.", 5) == [("go", 3), ("stop", 1)]


def test_ties_are_alphabetical():
    assert top_words("b a c b a c", 3) == [("a", 2), ("b", 2), ("c", 2)]


def test_edges():
    assert top_words("one two", 10) == [("one", 1), ("two", 1)]
    assert top_words("one two", 0) == []
    assert top_words("", 3) == []
