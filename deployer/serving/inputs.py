"""What a release accepts: the decoded JSON body becomes the model's input, or a 4xx naming the fix.

A request is the caller's error (a 4xx, never counted against the release) only when it fails a
check made here, *before* the model runs. Anything the model itself raises is the release's error
(a 500): a model that rejects every request must still fail its gates.

* :class:`Contract` ``numeric`` (sklearn, onnx): rows become a 2-D float64 array of the model's
  width; strings, ragged rows, wrong widths and, where the model cannot take them, nulls (NaN) are
  rejected. Rows given as objects are ordered by the model's feature names.
* ``numeric=False`` (an sklearn pipeline that takes strings): a 2-D object array of the right width.
* :data:`PASSTHROUGH` (python flavor, any object with ``predict``): the JSON list itself.

The body itself becomes rows in :mod:`deployer.serving.codec` (:func:`decode`, :func:`rows_of`), the
one decoder every contract and every generated cloud script shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployer.serving.codec import BadInput, decode, rows_of

__all__ = ["PASSTHROUGH", "BadInput", "Contract", "decode", "rows_of"]


@dataclass(frozen=True)
class Contract:
    """The input checks of one loaded release (see the module docstring)."""

    numeric: bool = True
    width: int | None = None
    names: tuple[str, ...] | None = None
    allow_nan: bool = False
    passthrough: bool = False

    def parse(self, rows: list[Any]) -> Any:
        """Rows ready for ``predict``; raises :class:`BadInput` naming the problem."""
        if self.passthrough:
            return rows
        import numpy as np  # imported on first use: the worker's HTTP stack loads without it

        if isinstance(rows[0], dict):
            rows = self._records(rows)
        try:
            x = np.asarray(rows) if self.numeric else np.asarray(rows, dtype=object)
        except (ValueError, TypeError) as e:
            raise BadInput(f"rows must all have the same number of values ({e})", "ragged") from None
        if x.ndim != 2 or (not self.numeric and x.dtype == object and _nested(x)):
            raise BadInput(
                "send each row as a flat list of values, e.g. [[0.1, 2.0, 3.5]]", "bad_shape"
            )  # fmt: skip
        if self.width is not None and x.shape[1] != self.width:
            raise BadInput(f"each row needs {self.width} features, got {x.shape[1]}", "bad_width")
        return self._numbers(x) if self.numeric else x

    def _records(self, rows: list[Any]) -> list[list[Any]]:
        if self.names is None:
            raise BadInput("this model has no feature names: send rows as lists of values", "bad_shape")
        out = []
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                raise BadInput(f"row {i} is not an object like the first row", "bad_shape")
            missing = [n for n in self.names if n not in r]
            if missing:
                raise BadInput(f"row {i} lacks feature(s) {', '.join(missing[:5])}", "missing_feature")
            out.append([r[n] for n in self.names])
        return out

    def _numbers(self, x: Any) -> Any:
        import numpy as np

        kind = x.dtype.kind
        if kind in "US" or (kind == "O" and any(isinstance(v, str | bytes) for v in x.flat)):
            raise BadInput("row values must be numbers, not strings", "not_numeric")
        if kind in "fiub":
            x = x.astype(np.float64, copy=False)
        else:
            try:
                x = x.astype(np.float64)
            except (TypeError, ValueError):
                raise BadInput(
                    "row values must be numbers (or null where the model allows it)", "not_numeric"
                ) from None
        if not self.allow_nan and not np.isfinite(x).all():
            i, j = np.argwhere(~np.isfinite(x))[0]
            raise BadInput(
                f"row {i}, feature {j} is null or not finite; this model cannot take missing values", "missing_value"
            )
        return x


def _nested(x: Any) -> bool:
    return any(isinstance(v, list | dict) for v in x.flat)


PASSTHROUGH = Contract(passthrough=True)
"""The contract of a model that takes the JSON rows as they are (python flavor)."""
