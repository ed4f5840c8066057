"""Strategies as data: how traffic moves from the live release to a new one.

``traffic_steps`` turns a :class:`~deployer.spec.Strategy` into ``(weight on the new release,
bake seconds)`` pairs the planner turns into route + bake steps:

* ``all-at-once``: ``[(100, 0)]``; gates, if any, run once after the switch (bake of 0 still
  evaluates one round when a baseline exists to return to).
* ``blue-green``: the new release is fully ready before any traffic moves, then ``[(100, bake_s)]``:
  all traffic switches at once and the bake keeps the old release warm for an instant switch-back.
* ``canary``: the explicit steps, e.g. ``5, 25, 50, 100``, each with its bake.
* ``linear``: ``step_percent`` every ``interval_s`` until 100.

On a new endpoint (no baseline) every strategy is a single ``(100, 0)``: there is nothing to
compare against or roll back to.

``rollback_steps`` gives the weights a gradual rollback walks through (``strategy.rollback =
"gradual"``); a snap rollback is one route.
"""

from __future__ import annotations

from deployer.spec import Strategy


def traffic_steps(strategy: Strategy, *, has_baseline: bool) -> list[tuple[int, float]]:
    if not has_baseline:
        return [(100, 0.0)]
    return strategy.weights()


def rollback_steps(strategy: Strategy, current_weight: int) -> list[int]:
    """Weights on the failed candidate while rolling back, ending at 0."""
    if strategy.rollback == "snap" or current_weight <= 0:
        return [0]
    ladder = sorted({w for w, _ in strategy.weights() if w < current_weight}, reverse=True)
    return [*ladder, 0] if ladder[-1:] != [0] else ladder
