"""A model that fails 20% of requests: every fifth request a worker serves raises."""

from __future__ import annotations

from typing import Any


class Model:
    def __init__(self) -> None:
        self.n = 0

    @classmethod
    def load(cls, path: Any) -> Model:
        return cls()

    def predict(self, rows: list[list[float]]) -> list[float]:
        self.n += 1
        if self.n % 5 == 0:
            raise RuntimeError(f"flaky model failed request {self.n}")
        return [float(sum(r)) for r in rows]
