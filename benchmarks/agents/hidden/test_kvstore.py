import json

from kvstore import KVStore


def test_set_and_get(tmp_path):
    store = KVStore(tmp_path / "db.json")
    store.set("name", "Ada")
    store.set("langs", ["python", "c"])
    assert store.get("name") == "Ada"
    assert store.get("langs") == ["python", "c"]
    assert store.get("missing") is None
    assert store.get("missing", 0) == 0


def test_a_new_store_sees_saved_data(tmp_path):
    path = tmp_path / "db.json"
    KVStore(path).set("n", 3)
    assert KVStore(path).get("n") == 3
    assert json.loads(path.read_text()) == {"n": 3}


def test_delete(tmp_path):
    path = tmp_path / "db.json"
    store = KVStore(path)
    store.set("a", 1)
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert KVStore(path).get("a") is None


def test_keys_are_sorted(tmp_path):
    store = KVStore(tmp_path / "db.json")
    for key in ("b", "c", "a"):
        store.set(key, key)
    assert store.keys() == ["a", "b", "c"]


def test_missing_file_is_an_empty_store(tmp_path):
    assert KVStore(tmp_path / "none.json").keys() == []
