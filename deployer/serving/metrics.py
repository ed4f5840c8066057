"""Per-release request metrics kept in per-second buckets.

Each worker process owns one :class:`MetricsRecorder`. The hot path (:meth:`Series.observe`) is a
few integer additions; a second's bucket is filed when the clock moves past it and dropped after
``RETENTION_S``. Workers flush their buckets to a JSON file (:meth:`MetricsRecorder.flush`), and
:func:`aggregate` merges any number of those files for a time window, so a provider can answer
"requests, errors and p99 of release r0002 over the last 5 minutes" across all workers.

File format (one per worker)::

    {"pid": 123, "at": 1700000000.1, "bounds": [...],
     "releases": {"r0001": {"total": [req, err, [hist...], rejected, [batches...]],
                            "seconds": {"1700000000": [req, err, [hist...], rejected, [batches...]], ...}}}}

``total`` counts everything the worker ever served (for Prometheus counters); ``seconds`` holds
the retained buckets. Histogram bin ``i`` counts latencies ``<= BOUNDS_MS[i]`` (the last bin is +Inf).

``req`` and ``err`` are the release's own: a prediction answered (2xx), failed by the model (5xx)
or timed out (504). A request refused before the model ran (a 4xx: bad JSON, wrong width, ...) is
the caller's error and counts only in ``rejected``; gates and guards never see it as an error.
``batches`` counts the ``predict`` calls by rows per call (bin ``i`` is ``<= BATCH_BOUNDS[i]``).
Files from before ``rejected`` and ``batches`` existed (three-element entries) still merge.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

BOUNDS_MS: tuple[float, ...] = (
    0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100,
    150, 200, 300, 500, 750, 1000, 2000, 5000, 10000, float("inf"),
)  # fmt: skip
"""Upper bounds (ms) of the latency histogram bins."""

BATCH_BOUNDS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, float("inf"))
"""Upper bounds (rows) of the batch-size histogram bins."""

RETENTION_S = 900
"""Seconds of per-second buckets a worker keeps (15 minutes)."""

_NBINS = len(BOUNDS_MS)
_NBATCH = len(BATCH_BOUNDS)
_Bucket = tuple[int, int, list[int], int, list[int]]


class Series:
    """Counters for one release in one worker. ``observe`` is the hot path."""

    __slots__ = ("sec", "req", "err", "hist", "rej", "batches", "past", "expired")

    expired: Aggregate

    def __init__(self) -> None:
        self.sec = 0
        self.req = 0
        self.err = 0
        self.rej = 0
        self.hist = [0] * _NBINS
        self.batches = [0] * _NBATCH
        self.past: dict[int, _Bucket] = {}
        self.expired = Aggregate()

    def observe(self, now: float, latency_ms: float, error: bool) -> None:
        sec = int(now)
        if sec != self.sec:
            self._roll(sec)
        self.req += 1
        if error:
            self.err += 1
        self.hist[bisect_left(BOUNDS_MS, latency_ms)] += 1

    def reject(self, now: float) -> None:
        """A request refused before the model ran (a 4xx): the caller's error, not the release's."""
        sec = int(now)
        if sec != self.sec:
            self._roll(sec)
        self.rej += 1

    def batch(self, now: float, rows: int) -> None:
        """One ``predict`` call over ``rows`` rows."""
        sec = int(now)
        if sec != self.sec:
            self._roll(sec)
        self.batches[bisect_left(BATCH_BOUNDS, rows)] += 1

    def _busy(self) -> bool:
        return bool(self.req or self.rej or any(self.batches))

    def _roll(self, sec: int) -> None:
        if self._busy():
            self.past[self.sec] = (self.req, self.err, self.hist, self.rej, self.batches)
            self.hist = [0] * _NBINS
            self.batches = [0] * _NBATCH
            self.req = self.err = self.rej = 0
        self.sec = sec
        cutoff = sec - RETENTION_S
        if self.past and min(self.past) < cutoff:
            for old in [s for s in self.past if s < cutoff]:
                self.expired.add(*self.past.pop(old))

    def snapshot(self, now: float) -> dict[str, object]:
        """Retained seconds (including the current one) and the all-time total."""
        if int(now) != self.sec:
            self._roll(int(now))
        seconds = {str(s): list(b) for s, b in self.past.items()}
        total = Aggregate()
        total.merge(self.expired)
        for bucket in self.past.values():
            total.add(*bucket)
        if self._busy():
            seconds[str(self.sec)] = [self.req, self.err, list(self.hist), self.rej, list(self.batches)]
            total.add(self.req, self.err, self.hist, self.rej, self.batches)
        return {"total": total.row(), "seconds": seconds}


class MetricsRecorder:
    """All releases of one worker, flushable to ``path``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.series: dict[str, Series] = {}

    def get(self, release: str) -> Series:
        s = self.series.get(release)
        if s is None:
            s = self.series[release] = Series()
        return s

    def snapshot(self) -> dict[str, object]:
        now = time.time()
        return {
            "pid": os.getpid(),
            "at": now,
            "bounds": [b if b != float("inf") else None for b in BOUNDS_MS],
            "releases": {rid: s.snapshot(now) for rid, s in self.series.items()},
        }

    def flush(self) -> None:
        """Write the snapshot atomically to ``path`` (no-op without a path)."""
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_bytes(orjson.dumps(self.snapshot()))
        os.replace(tmp, self.path)


@dataclass
class Aggregate:
    """Merged counters for one release over a window."""

    requests: int = 0
    errors: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * _NBINS)
    rejected: int = 0
    batches: list[int] = field(default_factory=lambda: [0] * _NBATCH)

    def add(self, req: int, err: int, hist: list[int], rej: int = 0, batches: list[int] | None = None) -> None:
        self.requests += req
        self.errors += err
        self.rejected += rej
        for i, n in enumerate(hist[:_NBINS]):
            if n:
                self.hist[i] += n
        for i, n in enumerate((batches or [])[:_NBATCH]):
            if n:
                self.batches[i] += n

    def merge(self, other: Aggregate) -> None:
        self.add(other.requests, other.errors, other.hist, other.rejected, other.batches)

    def row(self) -> list[Any]:
        """The file form: ``[req, err, hist, rejected, batches]``."""
        return [self.requests, self.errors, list(self.hist), self.rejected, list(self.batches)]

    def batch_sizes(self) -> dict[str, int]:
        """``predict`` calls by rows per call, keyed by the bin's upper bound ("+Inf" last)."""
        return {("+Inf" if b == float("inf") else f"{b:g}"): n for b, n in zip(BATCH_BOUNDS, self.batches, strict=True)}

    def percentile(self, q: float) -> float | None:
        """Latency percentile (ms), linearly interpolated inside the histogram bin."""
        return percentile(self.hist, q)


def percentile(hist: list[int], q: float) -> float | None:
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        if n and seen + n >= rank:
            lo = BOUNDS_MS[i - 1] if i else 0.0
            hi = BOUNDS_MS[i] if BOUNDS_MS[i] != float("inf") else lo * 2 or 1.0
            return round(lo + (hi - lo) * max(0.0, rank - seen) / n, 3)
        seen += n
    return BOUNDS_MS[-2]


def aggregate(
    snapshots: Iterable[dict[str, object]], window_s: float | None, now: float | None = None
) -> dict[str, Aggregate]:
    """Merge worker snapshots by release over the last ``window_s`` seconds (None: all-time totals)."""
    now = time.time() if now is None else now
    cutoff = now - window_s if window_s is not None else None
    out: dict[str, Aggregate] = {}
    for snap in snapshots:
        releases = snap.get("releases")
        if not isinstance(releases, dict):
            continue
        for rid, data in releases.items():
            agg = out.setdefault(rid, Aggregate())
            rows = [data["total"]] if cutoff is None else [v for s, v in data["seconds"].items() if int(s) + 1 > cutoff]
            for row in rows:
                agg.add(*row)
    return out


def read_snapshots(directory: Path) -> list[dict[str, object]]:
    """Every worker's flushed snapshot in ``directory`` (unreadable or partial files are skipped)."""
    out = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            out.append(orjson.loads((directory / name).read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            continue
    return out
