"""A stock of items."""


class Inventory:
    def __init__(self) -> None:
        self._stock: dict[str, int] = {}

    def add(self, item: str, quantity: int = 1) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self._stock[item] = self._stock.get(item, 0) + quantity

    def remove(self, item: str, quantity: int = 1) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        if item not in self._stock:
            raise KeyError(item)
        if quantity > self._stock[item]:
            raise ValueError(f"only {self._stock[item]} {item} in stock")
        self._stock[item] -= quantity
        if self._stock[item] == 0:
            del self._stock[item]

    def count(self, item: str) -> int:
        return self._stock.get(item, 0)

    def items(self) -> dict[str, int]:
        return dict(self._stock)

    def total(self) -> int:
        return sum(self._stock.values())
