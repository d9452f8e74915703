"""A stack that knows its minimum."""


class MinStack:
    def __init__(self) -> None:
        self._items: list[tuple[object, object]] = []

    def push(self, value) -> None:
        smallest = value if not self._items or value < self._items[-1][1] else self._items[-1][1]
        self._items.append((value, smallest))

    def pop(self):
        if not self._items:
            raise IndexError("pop from an empty stack")
        return self._items.pop()[0]

    def peek(self):
        if not self._items:
            raise IndexError("peek at an empty stack")
        return self._items[-1][0]

    def min(self):
        if not self._items:
            raise IndexError("min of an empty stack")
        return self._items[-1][1]

    def __len__(self) -> int:
        return len(self._items)
