"""A model that fails every request (a broken candidate)."""

from __future__ import annotations

from typing import Any


class Model:
    @classmethod
    def load(cls, path: Any) -> Model:
        return cls()

    def predict(self, rows: list[list[float]]) -> list[float]:
        raise RuntimeError("this candidate is broken")
