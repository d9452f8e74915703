import pytest
from taskqueue import TaskQueue


def test_highest_priority_first():
    queue = TaskQueue()
    queue.add("low", 1)
    queue.add("high", 10)
    queue.add("mid", 5)
    assert len(queue) == 3
    assert queue.peek() == "high"
    assert [queue.pop() for _ in range(3)] == ["high", "mid", "low"]
    assert len(queue) == 0


def test_equal_priorities_in_order_added():
    queue = TaskQueue()
    for name in ("a", "b", "c"):
        queue.add(name, 2)
    queue.add("urgent", 3)
    assert [queue.pop() for _ in range(4)] == ["urgent", "a", "b", "c"]


def test_contains():
    queue = TaskQueue()
    queue.add("write", 1)
    assert "write" in queue
    assert "read" not in queue
    queue.pop()
    assert "write" not in queue


def test_empty():
    queue = TaskQueue()
    with pytest.raises(IndexError):
        queue.pop()
    with pytest.raises(IndexError):
        queue.peek()
