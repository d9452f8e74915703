from slugify import slugify


def test_punctuation_and_case():
    assert slugify("Hello, World!") == "hello-world"


def test_runs_of_separators_become_one_hyphen():
    assert slugify("  Many   spaces  ") == "many-spaces"
    assert slugify("a--b__c") == "a-b-c"


def test_digits_are_kept():
    assert slugify("Python 3.12 rocks") == "python-3-12-rocks"


def test_a_slug_stays_as_it_is():
    assert slugify("already-a-slug") == "already-a-slug"


def test_nothing_left():
    assert slugify("!!!") == ""
    assert slugify("") == ""
