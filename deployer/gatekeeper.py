"""The gate loops: hold a traffic step while its gates are evaluated (:func:`bake`), or judge a live
release until its gates decide (:func:`watch`, used by the guard).

Both take a :class:`GateHost`, the narrow part of the engine they use (the provider's metrics and
invoke, the journal, ``emit`` and the clock), so this module never imports the engine. Every result
is journaled as ``<prefix>:<gate>`` and emitted as a ``GateEvaluated`` event by :func:`record`.

Late metrics
------------
A provider states its metrics' resolution and publication delay in
``capabilities.metrics_granularity_s`` (``g``) and ``metrics_delay_s`` (``d``); both are 0 for
per-request metrics available at once (local). They apply only when a gate reads metrics (``type:
metric``); smoke, callable and webhook gates judge at once.

* A bake's window starts at the first period boundary (epoch multiple of ``g``) at or after the
  moment the bake began, which is after the route that set this step's weights: a gate never reads
  the previous step's traffic, even from a metrics service that rounds a window's start down.
* The first evaluation waits until one whole period after that start is published (``start + g + d``);
  evaluations are at least ``g`` apart, so each sees a new datapoint.
* A bake lasts at least until that first evaluation. ``plan`` refuses, offline, a bake shorter than
  ``g + d`` (:func:`deployer.rollout.check_strategy`).

The bake (:func:`bake`)
-----------------------
For a bake of ``bake_s`` seconds the gates are evaluated every ``interval`` (a fifth of the bake,
between 0.5 s and 10 s, and at least ``g``) over the window since the step began.

* Any gate failing (its ``failure_limit`` reached) ends the bake at once: :class:`GateFailedError`.
* At the end of the bake every gate passing lets the rollout go on.
* Gates still pending at the end (inconclusive under policy ``wait``, or too few consecutive
  passes) keep the bake going for up to ``max(bake_s, 10 s, interval)`` more; then the deadline decides
  (:meth:`GateSet.final`), where inconclusive is a failure unless the gate's policy is ``pass``.

No gates: the bake is a plain wait.

The guard's watch (:func:`watch`)
---------------------------------
The live release is judged over the trailing ``window_s``. The gates are evaluated again and again
until each one decides (``failure_limit`` failures, or ``successes_required`` consecutive passes),
every ``interval = max(g, min(10 s, window_s / rounds))`` where ``rounds`` is the most evaluations
any gate can need (``failure_limit + successes_required - 1``), and never longer than ``window_s``.
It stops early when a pending gate's latest result is inconclusive (an idle endpoint stays idle
within one run). What is still pending then is the guard's *inconclusive*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from deployer.errors import GateFailedError
from deployer.events import Event
from deployer.gates import AnyGate, GateContext, GateResult, GateSet, MetricsProvider, Phase, reads_metrics
from deployer.records import Capabilities
from deployer.waiting import Clock, wall_offset


class Journal(Protocol):
    """The ledger's journal, as the gate loops write to it."""

    def journal(
        self, endpoint: str, release: str | None, step: str, phase: str, *, detail: dict[str, Any] | None = None
    ) -> int: ...


class GateProvider(MetricsProvider, Protocol):
    """The provider's metrics and invoke (gates), and the capabilities that say how late metrics come."""

    @property
    def capabilities(self) -> Capabilities: ...


class GateHost(Protocol):
    """What the gate loops need from whoever runs them: the engine satisfies it, and so does the guard."""

    @property
    def provider(self) -> GateProvider: ...

    @property
    def ledger(self) -> Journal: ...

    @property
    def clock(self) -> Clock: ...

    def emit(self, event: Event) -> None: ...


def _lateness(caps: Capabilities, gates: Sequence[AnyGate]) -> tuple[float, float]:
    """(granularity, delay) the gates must wait for: the provider's when a gate reads metrics, else none
    (smoke, callable and webhook gates judge at once)."""
    return (caps.metrics_granularity_s, caps.metrics_delay_s) if reads_metrics(gates) else (0.0, 0.0)


def record(host: GateHost, endpoint: str, results: Sequence[GateResult], prefix: str) -> None:
    """Journal each result as ``<prefix>:<gate>`` (its outcome as the phase) and emit its event."""
    for result in results:
        step = f"{prefix}:{result.gate}"
        host.ledger.journal(endpoint, result.release, step, result.outcome, detail=result.to_dict())
        host.emit(result.to_event(endpoint))


def bake(
    host: GateHost,
    endpoint: str,
    gates: Sequence[AnyGate],
    release: str,
    baseline: str | None,
    bake_s: float,
    *,
    weight: int | None = None,
    mirror: int | None = None,
) -> list[dict[str, Any]]:
    """Bake ``release`` (rules in the module docstring); return the evidence, or raise GateFailedError carrying it.

    ``weight`` and ``mirror`` are the candidate's shares of live and copied traffic in this step (for
    webhook gates).
    """
    clock = host.clock
    if not gates:
        clock.sleep(bake_s)
        return []
    g, d = _lateness(host.provider.capabilities, gates)
    gs = GateSet(gates)
    interval = max(g, min(10.0, max(0.5, bake_s / 5)))
    start = clock.now()
    window_start = _period_start(start, g, wall_offset(clock))
    first = max(window_start + g + d, start + interval)
    end = max(start + bake_s, first)
    hard_end = end + max(bake_s, 10.0, interval)
    due = first
    while True:
        clock.sleep(max(0.0, min(due, hard_end) - clock.now()))
        ctx = GateContext(
            endpoint=endpoint,
            release=release,
            provider=host.provider,
            baseline=baseline,
            window_s=max(1.0, clock.now() - window_start),
            weight=weight,
            mirror=mirror,
        )
        record(host, endpoint, gs.evaluate_round(ctx), "gate")
        now = clock.now()
        phase: Phase = "during" if now < end else "bake_end"
        decision = gs.decision(phase)
        if decision == "fail":
            raise _failed(gs, phase)
        if decision == "pass" and now >= end:
            return gs.evidence()
        if now >= hard_end:
            if gs.final() == "fail":
                raise _failed(gs, "deadline")
            return gs.evidence()
        due = now + interval


def watch(host: GateHost, endpoint: str, gates: Sequence[AnyGate], release: str, window_s: float) -> GateSet:
    """Evaluate ``gates`` on ``release`` over the trailing ``window_s`` until each decides (rules in the
    module docstring). ``decision("during")`` of the returned set is pass, fail, or pending (undecided)."""
    clock = host.clock
    gs = GateSet(gates)
    rounds = max((g.failure_limit + g.successes_required - 1 for g in gates), default=1)
    interval = max(_lateness(host.provider.capabilities, gates)[0], min(10.0, window_s / rounds))
    stop = clock.now() + window_s
    while True:
        ctx = GateContext(endpoint=endpoint, release=release, provider=host.provider, window_s=window_s)
        record(host, endpoint, gs.evaluate_round(ctx), "guard")
        if gs.decision("during") != "pending":
            return gs
        idle = any(t.verdict() == "pending" and t.last is not None and t.last.outcome == "inconclusive"
                   for t in gs.trackers)
        if idle or clock.now() + interval > stop:
            return gs
        clock.sleep(interval)


def _period_start(now: float, granularity_s: float, offset: float) -> float:
    """The first metrics period boundary at or after ``now`` (on the clock's axis; epoch = now + offset)."""
    if granularity_s <= 0:
        return now
    return math.ceil((now + offset) / granularity_s) * granularity_s - offset


def _failed(gates: GateSet, phase: Phase = "during") -> GateFailedError:
    reasons = gates.reasons(phase)
    text = "; ".join(f"{name}: {why}" for name, why in reasons.items()) or "gate failed"
    return GateFailedError(f"gate failed: {text}", evidence=gates.evidence())
