"""The in-process routing table: loaded releases, the traffic split and the mirror between them.

A :class:`Routing` is immutable. A worker builds a new one after loading new releases and swaps
the app's reference in one assignment, so a request sees either the old table or the new one and
never a release that is still loading.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deployer.serving.loader import Predictor
from deployer.serving.settings import DEFAULT, Settings


@dataclass(frozen=True)
class Routing:
    """Releases by id and the cumulative-weight table used to pick one per request.

    ``mirror`` is shadow traffic: release id -> percent of the split's requests copied to it (its
    answers never reach callers). ``settings`` are each release's serving settings (defaults when
    absent).
    """

    releases: Mapping[str, Predictor] = field(default_factory=dict)
    weights: Mapping[str, int] = field(default_factory=dict)
    version: int = 0
    mirror: Mapping[str, int] = field(default_factory=dict)
    settings: Mapping[str, Settings] = field(default_factory=dict)
    _ids: tuple[str, ...] = field(default=(), init=False, repr=False)
    _cum: tuple[float, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        live = [(rid, w) for rid, w in sorted(self.weights.items()) if w > 0 and rid in self.releases]
        cum, acc = [], 0.0
        for _, w in live:
            acc += w
            cum.append(acc)
        object.__setattr__(self, "_ids", tuple(rid for rid, _ in live))
        object.__setattr__(self, "_cum", tuple(c / acc for c in cum) if acc else ())

    @property
    def ready(self) -> bool:
        """True when at least one loaded release carries traffic."""
        return bool(self._ids)

    def live(self) -> tuple[str, ...]:
        return self._ids

    def settings_of(self, release: str) -> Settings:
        return self.settings.get(release, DEFAULT)

    def mirrored(self) -> dict[str, int]:
        """The mirror percentages of loaded releases."""
        return {rid: pct for rid, pct in self.mirror.items() if pct > 0 and rid in self.releases}

    def pick(self, rand: Any = random.random) -> str | None:
        """A release id drawn by weight, or None when nothing is live."""
        ids = self._ids
        if len(ids) == 1:
            return ids[0]
        if not ids:
            return None
        return ids[min(bisect_right(self._cum, rand()), len(ids) - 1)]
