"""Typed events the core emits through ``on_event``. The core never prints.

The CLI renders events with rich, ``--json`` streams them as JSON lines, a notebook shows its own
display. Every event has a ``kind`` and a ``to_dict()`` that is JSON-safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    endpoint: str
    kind: str = field(init=False, default="event")
    at: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class PlanReady(Event):
    kind: str = field(init=False, default="plan")
    steps: list[str] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StepStarted(Event):
    kind: str = field(init=False, default="step.started")
    step: str = ""
    release: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class StepDone(Event):
    kind: str = field(init=False, default="step.done")
    step: str = ""
    release: str | None = None
    outcome: str = "ok"
    detail: str = ""


@dataclass(frozen=True)
class Progress(Event):
    kind: str = field(init=False, default="progress")
    task: str = ""
    done: float = 0
    total: float | None = None


@dataclass(frozen=True)
class Retrying(Event):
    """A provider call or a wait met a transient error (throttling, 5xx, an unreachable endpoint) and
    will try again: why nothing moves, and how long the deadline still allows."""

    kind: str = field(init=False, default="retrying")
    operation: str = ""
    """What is retried: a provider call (``provider call``) or the operation waited on (``deploy_release``)."""
    release: str | None = None
    reason: str = ""
    attempt: int = 1
    left_s: float = 0.0
    """Seconds left before the call's or the wait's deadline."""


@dataclass(frozen=True)
class TrafficChanged(Event):
    kind: str = field(init=False, default="traffic.changed")
    weights: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GateEvaluated(Event):
    kind: str = field(init=False, default="gate.evaluated")
    release: str = ""
    gate: str = ""
    outcome: str = ""  # pass | fail | inconclusive
    observed: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class RolledBack(Event):
    kind: str = field(init=False, default="rolled_back")
    from_release: str | None = None
    to_release: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Promoted(Event):
    kind: str = field(init=False, default="promoted")
    release: str = ""


@dataclass(frozen=True)
class CleanupFailed(Event):
    """A step after the change succeeded (retiring the baseline, pruning artifacts) failed.

    The promoted (or live) release stays live; the step is journaled ``failed`` and the command exits 8.
    """

    kind: str = field(init=False, default="cleanup.failed")
    step: str = ""
    release: str | None = None
    error: str = ""


@dataclass(frozen=True)
class Interrupted(Event):
    """A rollout was interrupted (Ctrl-C or an unexpected error) before promotion.

    ``returned`` is True when traffic went back to ``baseline``; ``weights`` is what the endpoint serves now.
    """

    kind: str = field(init=False, default="interrupted")
    release: str | None = None
    baseline: str | None = None
    weights: dict[str, int] = field(default_factory=dict)
    returned: bool = False
    reason: str = ""
    ledger: str = ""
    """The ledger file the rollout is journaled in (for the command that undoes it)."""


@dataclass(frozen=True)
class Adopted(Event):
    """``deployer adopt`` recorded the endpoint's releases into this ledger; ``notes`` explain mismatches."""

    kind: str = field(init=False, default="adopted")
    live: str | None = None
    releases: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


EventFn = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The default ``on_event``: drop everything."""
