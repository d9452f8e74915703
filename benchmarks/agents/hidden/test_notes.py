import pytest
from notes import NoteStore


def test_add_and_get(tmp_path):
    store = NoteStore(tmp_path / "notes.json")
    first = store.add("Groceries", "milk and eggs", ["home"])
    second = store.add("Work", "send the report")
    assert (first, second) == (1, 2)
    note = store.get(1)
    assert note["id"] == 1
    assert note["title"] == "Groceries"
    assert note["body"] == "milk and eggs"
    assert list(note["tags"]) == ["home"]
    assert list(store.get(2)["tags"]) == []


def test_search_and_tags(tmp_path):
    store = NoteStore(tmp_path / "notes.json")
    store.add("Groceries", "Milk and eggs", ["home"])
    store.add("Work", "send the report", ["work", "urgent"])
    store.add("Call mum", "about the MILK", ["home"])
    assert store.search("milk") == [1, 3]
    assert store.search("REPORT") == [2]
    assert store.search("nothing") == []
    assert store.by_tag("home") == [1, 3]


def test_saved_and_ids_never_reused(tmp_path):
    path = tmp_path / "notes.json"
    store = NoteStore(path)
    store.add("a", "")
    store.add("b", "")
    store.delete(2)
    reopened = NoteStore(path)
    with pytest.raises(KeyError):
        reopened.get(2)
    assert reopened.get(1)["title"] == "a"
    assert reopened.add("c", "") == 3


def test_unknown_ids(tmp_path):
    store = NoteStore(tmp_path / "notes.json")
    with pytest.raises(KeyError):
        store.get(7)
    with pytest.raises(KeyError):
        store.delete(7)
