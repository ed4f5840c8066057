"""A python-flavor model: the sum of each row."""

from __future__ import annotations

from typing import Any


class Model:
    @classmethod
    def load(cls, path: Any) -> Model:
        return cls()

    def predict(self, rows: list[list[float]]) -> list[float]:
        return [float(sum(r)) for r in rows]
