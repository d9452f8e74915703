"""A publish/subscribe event bus."""

from collections.abc import Callable
from typing import Any


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    def subscribe(self, event: str, handler: Callable[..., Any]) -> Callable[[], None]:
        self._handlers.setdefault(event, []).append(handler)

        def unsubscribe() -> None:
            handlers = self._handlers.get(event, [])
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe

    def publish(self, event: str, *args: Any, **kwargs: Any) -> int:
        handlers = list(self._handlers.get(event, []))
        for handler in handlers:
            handler(*args, **kwargs)
        return len(handlers)
