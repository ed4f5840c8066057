"""The bake loop: hold a traffic step while the spec's gates are evaluated, and decide.

For a bake of ``bake_s`` seconds the gates are evaluated every ``interval`` (a fifth of the bake,
between 0.5 s and 10 s) over the window since the step began. Each result is journaled as
evidence and emitted as a ``GateEvaluated`` event.

* Any gate failing (its ``failure_limit`` reached) ends the bake at once: :class:`GateFailedError`.
* At the end of the bake every gate passing lets the rollout go on.
* Gates still pending at the end (inconclusive under policy ``wait``, or too few consecutive
  passes) keep the bake going for up to ``max(bake_s, 10 s)`` more; then the deadline decides
  (:meth:`GateSet.final`), where inconclusive is a failure unless the gate's policy is ``pass``.

No gates: the bake is a plain wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployer.errors import GateFailedError
from deployer.gates import GateContext, GateSet, Phase

if TYPE_CHECKING:
    from deployer.engine import Engine
    from deployer.spec import Spec


def bake(engine: Engine, spec: Spec, release: str, baseline: str | None, bake_s: float) -> list[dict[str, Any]]:
    """Bake ``release``; return the evidence, or raise GateFailedError carrying it."""
    clock = engine.clock
    if not spec.gates:
        clock.sleep(bake_s)
        return []
    endpoint = spec.name
    gates = GateSet(spec.gates)
    interval = min(10.0, max(0.5, bake_s / 5))
    start = clock.now()
    end = start + bake_s
    hard_end = end + max(bake_s, 10.0)
    weight = engine.ledger.endpoint(endpoint)
    current = weight.traffic.weights.get(release) if weight else None
    while True:
        now = clock.now()
        clock.sleep(max(0.0, min(interval, hard_end - now)))
        window = max(1.0, clock.now() - start)
        ctx = GateContext(
            endpoint=endpoint,
            release=release,
            provider=engine.provider,
            baseline=baseline,
            window_s=window,
            weight=current,
        )
        for result in gates.evaluate_round(ctx):
            engine.ledger.journal(endpoint, release, f"gate:{result.gate}", result.outcome, detail=result.to_dict())
            engine.emit(result.to_event(endpoint))
        now = clock.now()
        phase: Phase = "during" if now < end else "bake_end"
        decision = gates.decision(phase)
        if decision == "fail":
            raise _failed(gates, phase)
        if decision == "pass" and now >= end:
            return gates.evidence()
        if now >= hard_end:
            if gates.final() == "fail":
                raise _failed(gates, "deadline")
            return gates.evidence()


def _failed(gates: GateSet, phase: Phase = "during") -> GateFailedError:
    reasons = gates.reasons(phase)
    text = "; ".join(f"{name}: {why}" for name, why in reasons.items()) or "gate failed"
    return GateFailedError(f"gate failed: {text}", evidence=gates.evidence())
