"""Guard: judge the live release over a window and roll back when it is unhealthy.

Made for schedules (cron, systemd timers, CI schedules) with nobody watching::

    deployer guard churn --max-error-rate 0.01 --max-p99-ms 300 --window 10m

The live release is judged over the trailing window by metric gates built from the thresholds
(each needs ``min_samples`` requests, so an idle endpoint is *inconclusive*, never healthy by
default) plus, with ``gates_from``, the gates of a spec file. One run decides: gates that need
several failures (``failure_limit``) or consecutive passes (``successes_required``) are evaluated
again within the run until each decides, spaced by the provider's metrics granularity and bounded
by the window (:func:`deployer.gatekeeper.watch`). A failing gate rolls back to the last good
release in one route (:meth:`Engine.rollback <deployer.engine.Engine.rollback>`), with the evidence
in the ledger. Guards take the endpoint lock, so two guards at once never both act: the second
reports ``locked`` and does nothing.

Outcomes and CLI exit codes: ``healthy`` 0, ``rolled_back`` 10, ``no_rollback_target`` 11,
``inconclusive`` 12, ``locked`` 6; errors use the usual codes.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.engine import Engine
from deployer.errors import LockedError, NoPreviousReleaseError, NotFoundError, SpecError
from deployer.events import EventFn
from deployer.gatekeeper import watch
from deployer.gates import AnyGate
from deployer.spec import MetricGate
from deployer.waiting import Clock

EXIT_CODES = {"healthy": 0, "rolled_back": 10, "no_rollback_target": 11, "inconclusive": 12, "locked": 6}


@dataclass
class GuardReport:
    endpoint: str
    outcome: str
    release: str | None = None
    rolled_back_to: str | None = None
    reason: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "outcome": self.outcome,
            "release": self.release,
            "rolled_back_to": self.rolled_back_to,
            "reason": self.reason,
            "evidence": self.evidence,
            "exit_code": self.exit_code,
        }


def parse_window(text: str | float) -> float:
    """``"10m"`` -> 600.0; accepts s, m, h suffixes or plain seconds."""
    if isinstance(text, int | float):
        return float(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise SpecError("window", f"cannot read {text!r} as a duration", fix="write e.g. 30s, 10m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def guard(
    name: str,
    *,
    max_error_rate: float | None = None,
    max_p99_ms: float | None = None,
    window: str | float = "10m",
    min_samples: int = 20,
    gates_from: str | Path | None = None,
    notify_url: str | None = None,
    state: str | None = None,
    on_event: EventFn | None = None,
    clock: Clock | None = None,
) -> GuardReport:
    """Judge ``name``'s live release over ``window``; roll back on a failed gate. See the module doc.

    ``clock`` drives the pauses between evaluations (tests pass a fake one).
    """
    from deployer import api

    window_s = parse_window(window)
    gates: list[AnyGate] = []
    if max_error_rate is not None:
        gates.append(MetricGate(name="error_rate", metric="error_rate", max=max_error_rate, min_samples=min_samples))
    if max_p99_ms is not None:
        gates.append(MetricGate(name="p99_ms", metric="p99_ms", max=max_p99_ms, min_samples=min_samples))
    if gates_from is not None:
        gates.extend(api.to_spec(gates_from).gates)
    if not gates:
        raise SpecError(
            "gates", "guard has nothing to check", fix="pass --max-error-rate, --max-p99-ms or --gates-from SPEC"
        )
    ledger = api.open_ledger(state)
    try:
        _, provider = api.provider_for(ledger, name)
        engine = Engine(provider, ledger, on_event=on_event, clock=clock, notify_url=notify_url)
        with contextlib.ExitStack() as held:
            try:  # only taking the lock may answer "locked"; errors while judging propagate
                held.enter_context(ledger.lock(name, "guard"))
            except LockedError as e:
                return GuardReport(name, "locked", reason=f"another operation holds the lock: {e.holder}; did nothing")
            return _judge(engine, name, gates, window_s)
    finally:
        ledger.close()


def _judge(engine: Engine, name: str, gates: list[AnyGate], window_s: float) -> GuardReport:
    """Watch the live release until its gates decide; roll back on failure. The caller holds the lock."""
    ledger = engine.ledger
    live = ledger.live_release(name)
    if live is None:
        raise NotFoundError(f"endpoint {name!r} has no live release to guard", hint="deploy it first")
    gs = watch(engine, name, gates, live.id, window_s)
    evidence = gs.evidence()
    decision = gs.decision("during")
    if decision == "pass":
        return GuardReport(name, "healthy", live.id, evidence=evidence)
    if decision != "fail":
        # an idle gate says why ("0 requests in 600s, need 20"); an unproven one gives its counts
        reasons = "; ".join(
            f"{t.name}: {t.last.reason if t.last.outcome == 'inconclusive' else t.reason('during')}"
            for t in gs.trackers
            if t.last is not None and t.verdict("during") != "pass"
        )
        return GuardReport(name, "inconclusive", live.id, reason=reasons, evidence=evidence)
    reason = "guard: " + "; ".join(f"{k}: {v}" for k, v in gs.reasons("during").items())
    try:
        target = ledger.rollback_target(name, exclude=live.id)
    except NoPreviousReleaseError:
        ledger.set_release(name, live.id, reason=reason, evidence=evidence)
        return GuardReport(name, "no_rollback_target", live.id, reason=reason, evidence=evidence)
    out = engine.rollback(name, to=target.id, reason=reason)
    ledger.set_release(name, live.id, outcome="failed", evidence=evidence)
    return GuardReport(name, "rolled_back", live.id, out.release, reason, evidence)
