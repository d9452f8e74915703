"""Small matrices."""


class Matrix:
    def __init__(self, rows) -> None:
        rows = [list(row) for row in rows]
        if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
            raise ValueError("rows must be non-empty lists of equal length")
        self.rows = rows
        self.shape = (len(rows), len(rows[0]))

    def __add__(self, other: "Matrix") -> "Matrix":
        if self.shape != other.shape:
            raise ValueError("shapes differ")
        return Matrix(
            [
                [a + b for a, b in zip(r, s, strict=True)]
                for r, s in zip(self.rows, other.rows, strict=True)
            ]
        )

    def __matmul__(self, other: "Matrix") -> "Matrix":
        if self.shape[1] != other.shape[0]:
            raise ValueError("inner sizes differ")
        columns = list(zip(*other.rows, strict=True))
        return Matrix(
            [
                [sum(a * b for a, b in zip(row, col, strict=True)) for col in columns]
                for row in self.rows
            ]
        )

    def transpose(self) -> "Matrix":
        return Matrix([list(col) for col in zip(*self.rows, strict=True)])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Matrix) and self.rows == other.rows

    def __repr__(self) -> str:
        return f"Matrix({self.rows!r})"
