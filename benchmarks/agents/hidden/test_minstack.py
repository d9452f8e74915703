import pytest
from minstack import MinStack


def test_push_pop_peek():
    stack = MinStack()
    stack.push(3)
    stack.push(5)
    assert stack.peek() == 5
    assert len(stack) == 2
    assert stack.pop() == 5
    assert stack.pop() == 3
    assert len(stack) == 0


def test_min_follows_pops():
    stack = MinStack()
    for value in (5, 3, 7, 3, 1):
        stack.push(value)
    assert stack.min() == 1
    stack.pop()
    assert stack.min() == 3
    stack.pop()
    assert stack.min() == 3
    stack.pop()
    assert stack.min() == 3
    stack.pop()
    assert stack.min() == 5


def test_empty_stack():
    stack = MinStack()
    for method in (stack.pop, stack.peek, stack.min):
        with pytest.raises(IndexError):
            method()
