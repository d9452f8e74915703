"""A key-value web service with FastAPI, kept in memory."""

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel

app = FastAPI()
items: dict[str, str] = {}


class Value(BaseModel):
    value: str


@app.put("/items/{key}")
def put_item(key: str, body: Value) -> dict[str, str]:
    items[key] = body.value
    return {"key": key, "value": body.value}


@app.get("/items/{key}")
def get_item(key: str) -> dict[str, str]:
    if key not in items:
        raise HTTPException(status_code=404, detail="not found")
    return {"key": key, "value": items[key]}


@app.delete("/items/{key}", status_code=204)
def delete_item(key: str) -> Response:
    if key not in items:
        raise HTTPException(status_code=404, detail="not found")
    del items[key]
    return Response(status_code=204)


@app.get("/items")
def list_items() -> list[str]:
    return sorted(items)
