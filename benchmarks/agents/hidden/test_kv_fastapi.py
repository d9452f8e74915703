import kv_fastapi
import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def client():
    return TestClient(kv_fastapi.app)


def test_put_then_get(client):
    response = client.put("/items/colour", json={"value": "blue"})
    assert response.status_code == 200
    assert response.json() == {"key": "colour", "value": "blue"}
    response = client.get("/items/colour")
    assert response.status_code == 200
    assert response.json() == {"key": "colour", "value": "blue"}


def test_put_replaces(client):
    client.put("/items/k", json={"value": "1"})
    client.put("/items/k", json={"value": "2"})
    assert client.get("/items/k").json() == {"key": "k", "value": "2"}


def test_unknown_key_is_404(client):
    assert client.get("/items/never-stored").status_code == 404


def test_delete(client):
    client.put("/items/gone", json={"value": "x"})
    assert client.delete("/items/gone").status_code == 204
    assert client.get("/items/gone").status_code == 404
    assert client.delete("/items/gone").status_code == 404


def test_list_is_sorted(client):
    for key in ("pear", "apple", "fig"):
        client.put(f"/items/{key}", json={"value": key})
    keys = client.get("/items").json()
    assert keys == sorted(keys)
    assert {"apple", "fig", "pear"} <= set(keys)


def test_a_body_without_a_value_is_refused(client):
    assert client.put("/items/k", json={"other": 1}).status_code == 422
