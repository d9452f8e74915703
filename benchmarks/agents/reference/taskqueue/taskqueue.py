"""A priority queue of named tasks."""

import heapq
import itertools


class TaskQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str]] = []
        self._order = itertools.count()

    def add(self, name: str, priority: int) -> None:
        heapq.heappush(self._heap, (-priority, next(self._order), name))

    def pop(self) -> str:
        if not self._heap:
            raise IndexError("the queue is empty")
        return heapq.heappop(self._heap)[2]

    def peek(self) -> str:
        if not self._heap:
            raise IndexError("the queue is empty")
        return self._heap[0][2]

    def __len__(self) -> int:
        return len(self._heap)

    def __contains__(self, name: object) -> bool:
        return any(entry[2] == name for entry in self._heap)
