"""Strategies as data: how traffic moves from the live release to a new one.

``traffic_steps`` turns a :class:`~deployer.spec.Strategy` into :class:`TrafficStep` records (weight
on the new release, bake seconds, mirrored percent) the planner turns into route + bake steps:

* ``all-at-once``: ``[(100, 0)]``; gates, if any, run once after the switch (bake of 0 still
  evaluates one round when a baseline exists to return to).
* ``blue-green``: the new release is fully ready before any traffic moves, then ``[(100, bake_s)]``:
  all traffic switches at once and the bake keeps the old release warm for an instant switch-back.
* ``canary``: the explicit steps, e.g. ``5, 25, 50, 100``, each with its bake.
* ``linear``: ``step_percent`` every ``interval_s`` until 100.

``strategy.shadow`` puts a **shadow phase** before these: all live traffic stays on the baseline
while ``percent`` of requests are *copied* to the candidate (its answers never reach callers), the
gates judge the candidate on those copies for ``shadow.bake_s``, then a route clears the mirror
before the first traffic step.

On a new endpoint (no baseline) every strategy is a single ``(100, 0)``: there is nothing to
compare against, mirror from or roll back to.

``rollback_steps`` gives the weights a gradual rollback walks through (``strategy.rollback =
"gradual"``); a snap rollback is one route.

:func:`check_strategy` refuses, offline, a strategy the provider cannot run or judge: a shadow phase
without ``capabilities.shadow``, or a bake with gates shorter than the provider's metrics
granularity plus their publication delay.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployer.errors import CapabilityError, SpecError
from deployer.gates import reads_metrics
from deployer.records import Capabilities
from deployer.spec import Spec, Strategy


@dataclass(frozen=True)
class TrafficStep:
    """One step of a rollout: ``weight`` percent of live traffic on the candidate, ``mirror`` percent
    of requests copied to it, held ``bake_s`` seconds while the gates run (no bake when ``bake_s`` is
    None: the route that clears a shadow phase's mirror)."""

    weight: int
    bake_s: float | None
    mirror: int = 0


def traffic_steps(strategy: Strategy, *, has_baseline: bool) -> list[TrafficStep]:
    if not has_baseline:
        return [TrafficStep(100, 0.0)]
    shadow: list[TrafficStep] = []
    if strategy.shadow is not None:
        shadow = [TrafficStep(0, strategy.shadow.bake_s, mirror=strategy.shadow.percent), TrafficStep(0, None)]
    return [*shadow, *(TrafficStep(w, bake) for w, bake in strategy.weights())]


def rollback_steps(strategy: Strategy, current_weight: int) -> list[int]:
    """Weights on the failed candidate while rolling back, ending at 0."""
    if strategy.rollback == "snap" or current_weight <= 0:
        return [0]
    ladder = sorted({w for w, _ in strategy.weights() if w < current_weight}, reverse=True)
    return [*ladder, 0] if ladder[-1:] != [0] else ladder


def bakes(strategy: Strategy) -> list[tuple[str, float]]:
    """Every bake of ``strategy`` with the spec field that sets it (``strategy.steps[1].bake_s``)."""
    out: list[tuple[str, float]] = []
    if strategy.shadow is not None:
        out.append(("strategy.shadow.bake_s", strategy.shadow.bake_s))
    if strategy.type == "canary":
        out += [(f"strategy.steps[{i}].bake_s", s.bake_s) for i, s in enumerate(strategy.steps)]
    elif strategy.type == "linear":
        out.append(("strategy.interval_s", strategy.interval_s))
    elif strategy.type == "blue-green":
        out.append(("strategy.bake_s", strategy.bake_s))
    else:
        out.append(("strategy.type", 0.0))
    return out


def min_bake_s(capabilities: Capabilities) -> float:
    """The shortest bake a provider's metrics can judge: one whole datapoint, published."""
    return capabilities.metrics_granularity_s + capabilities.metrics_delay_s


def check_strategy(spec: Spec, capabilities: Capabilities) -> None:
    """Refuse, before any provider call, a strategy the provider cannot run or its gates cannot judge.

    Raises :class:`CapabilityError` for a shadow phase on a provider without ``shadow`` (with its
    reason), :class:`SpecError` for a shadow phase with ``strategy.native``, and :class:`SpecError`
    naming the field (``strategy.steps[i].bake_s``, ``strategy.interval_s``, ``strategy.bake_s``,
    ``strategy.shadow.bake_s``, or ``strategy.type`` for all-at-once) when a bake judged by gates is
    shorter than :func:`min_bake_s`. Only metric gates wait for datapoints: bakes whose gates are all
    smoke, callable or webhook gates (or none) are never refused.
    """
    strategy = spec.strategy
    if strategy.shadow is not None:
        if strategy.native:
            raise SpecError(
                "strategy.shadow",
                "the provider's native rollout has no shadow phase",
                fix="remove strategy.shadow, or strategy.native to let deployer run the rollout",
            )
        if not capabilities.shadow:
            raise CapabilityError(
                f"strategy.shadow: {capabilities.reason('shadow')}", hint="remove strategy.shadow"
            )
    need = min_bake_s(capabilities)
    if not reads_metrics(spec.gates) or strategy.native or need <= 0:
        return
    source = (
        f"the provider's metrics come as {capabilities.metrics_granularity_s:g}s datapoints "
        f"published {capabilities.metrics_delay_s:g}s late"
    )
    for field, bake_s in bakes(strategy):
        if bake_s >= need:
            continue
        if field == "strategy.type":
            raise SpecError(
                field,
                f"all-at-once judges its gates right after the switch, but {source}: gates need a bake of "
                f"at least {need:g}s",
                fix=f"use blue-green with bake_s: {need:g} or more, or canary steps baking {need:g}s or more",
            )
        raise SpecError(
            field,
            f"a bake of {bake_s:g}s is too short to judge: {source}, so gates need at least {need:g}s",
            fix=f"set {field} to {need:g} or more",
        )
