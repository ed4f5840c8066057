"""The verification rule every substitute for ``model.predict`` must pass before it serves.

A substitute (the hand-written linear fast path, an ONNX graph compiled from the model) serves only
after it reproduced ``model.predict`` on :func:`probe_rows`: the same labels for a classifier, the
same values to ``rtol`` for a regressor. Otherwise the model itself serves and the reason is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PROBE_SCALES = (0.01, 1.0, 3.0, 100.0)
"""Spreads of the random probe rows: small, unit, wide and large features."""


def probe_rows(width: int, per_scale: int = 64, seed: int = 0) -> Any:
    """Deterministic float64 probe rows of ``width`` features, the all-zero row first."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros((1, width))] + [rng.normal(size=(per_scale, width)) * s for s in PROBE_SCALES]
    return np.concatenate(parts)


def mismatch(expected: Any, got: Any, rtol: float = 1e-12) -> str | None:
    """Why ``got`` does not reproduce ``expected`` (None when it does)."""
    expected = np.asarray(expected)
    got = np.asarray(got)
    if got.shape != expected.shape:
        return f"shape {got.shape} instead of {expected.shape}"
    if expected.dtype.kind in "fc":
        if got.dtype.kind not in "fc":
            return f"dtype {got.dtype} instead of {expected.dtype}"
        bad = ~np.isclose(got, expected, rtol=rtol, atol=0.0)
    elif got.dtype.kind == expected.dtype.kind:
        bad = got != expected
    elif {got.dtype.kind, expected.dtype.kind} <= {"U", "O", "S"}:
        bad = got.astype(str) != expected.astype(str)
    else:
        return f"dtype {got.dtype} instead of {expected.dtype}"
    n = int(np.count_nonzero(bad))
    return f"{n} of {expected.shape[0]} probe rows differ" if n else None
