"""Guard: judge what callers of an endpoint experience and roll back what fails.

Made for schedules (cron, systemd timers, CI schedules) with nobody watching::

    deployer guard churn --max-error-rate 0.01 --max-p99-ms 300 --window 10m [--probe '[[1,2,3,4]]']

One run, under the endpoint lock (a second guard reports ``locked`` and does nothing):

1. **Sight.** The provider is observed first: missing or expired credentials (:class:`AuthError`) or an
   unreachable control plane are errors (exit 3), never a verdict. So is a metrics API that cannot be
   read (checked after the gates): a blind guard never says ``inconclusive``.
2. **Probe.** Every release that carries traffic (the live one, and a candidate an interrupted rollout
   left with a share) is probed: its state on the provider (a ``failed`` or missing release is *down*)
   and, with a probe payload (``--probe``, else the payload of the first smoke gate of ``gates_from``),
   a request sent to it through the provider's ``invoke``: refused connections or no answer are
   *down*, an answer >= 400 is a *fail*.
3. **Gates.** The releases that are not down are judged over the trailing window by metric gates
   built from the thresholds (each needs ``min_samples`` requests, so an idle endpoint is
   *inconclusive*, never healthy) plus the gates of ``gates_from``, release by release, until each
   decides (:func:`deployer.gatekeeper.watch`).
4. **Decide.**

   * every serving release down: roll back to the last good release when it still runs ready
     (that helps callers); otherwise ``endpoint_down`` (exit 13), the endpoint needs a redeploy;
   * the live release fails (or is down): roll back to the last good release in one route
     (``rolled_back``), or ``no_rollback_target`` when the ledger names none;
   * only a candidate with traffic fails: its share goes back to the live release in one route and the
     candidate is marked ``failed`` with the evidence (``rolled_back``). The guard never resumes an
     interrupted rollout: ``deployer deploy SPEC`` does that;
   * all pass: ``healthy``; otherwise ``inconclusive`` (reachable, judged, too little traffic).

The report names each serving release with its traffic share and verdict. Outcomes and CLI exit codes:
``healthy`` 0, ``rolled_back`` 10, ``no_rollback_target`` 11, ``inconclusive`` 12, ``endpoint_down``
13, ``locked`` 6; errors use the usual codes (3 for a blind guard).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer import retry
from deployer.engine import Engine
from deployer.errors import (
    AuthError,
    LockedError,
    NoPreviousReleaseError,
    NotFoundError,
    ProviderError,
    SpecError,
)
from deployer.events import Event, EventFn
from deployer.gatekeeper import GateProvider, watch
from deployer.gates import AnyGate, GateSet
from deployer.ledger import ReleaseRow
from deployer.protocols import LedgerStore
from deployer.records import Capabilities, Metrics, Observed, Response
from deployer.spec import MetricGate, SmokeGate
from deployer.waiting import Clock

EXIT_CODES = {
    "healthy": 0,
    "rolled_back": 10,
    "no_rollback_target": 11,
    "inconclusive": 12,
    "endpoint_down": 13,
    "locked": 6,
}


@dataclass
class ReleaseVerdict:
    """One serving release as the guard judged it: ``pass``, ``fail``, ``down`` or ``inconclusive``."""

    id: str
    weight: int
    role: str
    """``live``, ``candidate`` (an in-flight rollout's release) or ``other``."""
    verdict: str = "inconclusive"
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "weight": self.weight, "role": self.role, "verdict": self.verdict, "reason": self.reason}


@dataclass
class GuardReport:
    endpoint: str
    outcome: str
    release: str | None = None
    rolled_back_to: str | None = None
    reason: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    releases: list[ReleaseVerdict] = field(default_factory=list)

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
            "releases": [v.to_dict() for v in self.releases],
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
    probe: Any = None,
    notify_url: str | None = None,
    state: str | None = None,
    on_event: EventFn | None = None,
    clock: Clock | None = None,
) -> GuardReport:
    """Judge what ``name``'s callers experience over ``window``; roll back what fails. See the module doc.

    ``probe`` is the payload sent to each serving release (default: the first smoke gate's payload of
    ``gates_from``; without one the probe is the provider's view of each release). ``clock`` drives the
    pauses between evaluations (tests pass a fake one).
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
    if probe is None:
        probe = next((g.payload for g in gates if isinstance(g, SmokeGate)), None)
    ledger = api.open_ledger(state)
    try:
        _, provider = api.provider_for(ledger, name)
        engine = Engine(provider, ledger, on_event=on_event, clock=clock, notify_url=notify_url)
        with contextlib.ExitStack() as held:
            try:  # only taking the lock may answer "locked"; errors while judging propagate
                held.enter_context(ledger.lock(name, "guard"))
            except LockedError as e:
                return GuardReport(name, "locked", reason=f"another operation holds the lock: {e.holder}; did nothing")
            return _judge(engine, name, gates, window_s, probe)
    finally:
        ledger.close()


class _SightedMetrics:
    """The provider as the guard's gates read it: metrics retried like every provider call, and the first
    error that outlives the retries kept in :attr:`error` (the guard is blind, not inconclusive)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.error: ProviderError | None = None

    @property
    def capabilities(self) -> Capabilities:
        return self._engine.provider.capabilities

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        try:
            return self._engine.call(lambda: self._engine.provider.metrics(endpoint, release, window_s))
        except ProviderError as e:
            self.error = self.error or e
            raise

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        return self._engine.provider.invoke(endpoint, payload, release=release)


class _Sight:
    """The gate host the guard judges through: the engine's journal, clock and events, with
    :class:`_SightedMetrics` as the provider."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.metrics = _SightedMetrics(engine)

    @property
    def provider(self) -> GateProvider:
        return self.metrics

    @property
    def ledger(self) -> LedgerStore:
        return self._engine.ledger

    @property
    def clock(self) -> Clock:
        return self._engine.clock

    def emit(self, event: Event) -> None:
        self._engine.emit(event)


def _probe(engine: Engine, name: str, observed: Observed, v: ReleaseVerdict, payload: Any) -> None:
    """Probe one serving release; set ``v`` to ``down`` or ``fail`` with the reason (else leave it)."""
    rel = observed.releases.get(v.id)
    if observed.status == "failed" or rel is None or rel.status == "failed":
        why = (rel.message if rel else None) or (
            f"the provider reports {name!r} failed" if observed.status == "failed" else f"the provider has no {v.id}"
        )
        v.verdict, v.reason = "down", f"{v.id} is down: {why}"
    elif payload is not None:
        try:
            resp = retry.call(
                lambda: engine.provider.invoke(name, payload, release=v.id),
                attempts=2,
                deadline_s=10.0,
                sleep=engine.clock.sleep,
            )
        except AuthError:
            raise
        except ProviderError as e:
            v.verdict, v.reason = "down", f"{v.id} did not answer the probe: {e}"
        else:
            if resp.status >= 400:
                v.verdict, v.reason = "fail", f"{v.id} answered the probe with HTTP {resp.status}"
    outcome = {"down": "fail", "fail": "fail"}.get(v.verdict, "pass")
    detail = {"gate": "probe", "type": "probe", "outcome": outcome, "release": v.id, "reason": v.reason or "answers"}
    engine.ledger.journal(name, v.id, "guard.probe", outcome, detail=detail)


def _judge(engine: Engine, name: str, gates: list[AnyGate], window_s: float, payload: Any) -> GuardReport:
    """Probe and judge every serving release; roll back what fails. The caller holds the lock."""
    ledger = engine.ledger
    live = ledger.live_release(name)
    if live is None:
        raise NotFoundError(f"endpoint {name!r} has no live release to guard", hint="deploy it first")
    observed = engine.call(lambda: engine.provider.observe(name))  # no credentials / no control plane: raises
    if observed is None:
        return _down(
            engine, name, live, [ReleaseVerdict(live.id, 0, "live", "down", f"the provider has no endpoint {name!r}")]
        )
    shares = observed.traffic.weights or {live.id: 100}
    flight = ledger.in_flight(name)
    verdicts = [
        ReleaseVerdict(
            rid, w, "live" if rid == live.id else "candidate" if flight and rid == flight.id else "other"
        )
        for rid, w in sorted(shares.items())
    ]
    for v in verdicts:
        _probe(engine, name, observed, v, payload)
    up = [v for v in verdicts if v.verdict != "down"]
    if not up:
        return _down(engine, name, live, verdicts)
    sight = _Sight(engine)
    sets = watch(sight, name, gates, [v.id for v in up], window_s)
    if sight.metrics.error is not None:
        raise sight.metrics.error
    evidence = [e for gs in sets.values() for e in gs.evidence()]
    for v in up:
        _verdict(v, sets[v.id])
    failing = [v for v in verdicts if v.verdict in ("fail", "down")]
    by_id = {v.id: v for v in verdicts}
    if not failing:
        if all(v.verdict == "pass" for v in verdicts):
            return GuardReport(name, "healthy", live.id, evidence=evidence, releases=verdicts)
        reasons = "; ".join(v.reason for v in verdicts if v.verdict != "pass")
        return GuardReport(name, "inconclusive", live.id, reason=reasons, evidence=evidence, releases=verdicts)
    reason = "guard: " + "; ".join(v.reason for v in failing)
    live_v = by_id.get(live.id)
    if live_v is not None and live_v.verdict in ("fail", "down"):
        try:
            target = ledger.rollback_target(name, exclude=live.id)
        except NoPreviousReleaseError:
            ledger.set_release(name, live.id, reason=reason, evidence=evidence)
            return GuardReport(name, "no_rollback_target", live.id, reason=reason, evidence=evidence, releases=verdicts)
        out = engine.rollback(name, to=target.id, reason=reason)
        ledger.set_release(name, live.id, outcome="failed", evidence=evidence)
        _fail_candidates(ledger, name, failing, live.id, evidence)
        return GuardReport(name, "rolled_back", live.id, out.release, reason, evidence, verdicts)
    # only candidates fail: their shares go back to the live release, which stays live
    engine.rollback(name, to=live.id, reason=reason)
    _fail_candidates(ledger, name, failing, live.id, evidence)
    first = failing[0].id
    return GuardReport(name, "rolled_back", first, live.id, reason, evidence, verdicts)


def _verdict(v: ReleaseVerdict, gs: GateSet) -> None:
    """Fold the gates' decision on ``v``'s release into its verdict (a failed probe stays a failure)."""
    decision = gs.decision("during")
    if v.verdict == "fail":
        return
    if decision == "fail":
        v.verdict = "fail"
        v.reason = f"{v.id}: " + "; ".join(f"{k}: {r}" for k, r in gs.reasons("during").items())
    elif decision == "pass":
        v.verdict, v.reason = "pass", ""
    else:
        # an idle gate says why ("0 requests in 600s, need 20"); an unproven one gives its counts
        v.reason = f"{v.id}: " + "; ".join(
            f"{t.name}: {t.last.reason if t.last.outcome == 'inconclusive' else t.reason('during')}"
            for t in gs.trackers
            if t.last is not None and t.verdict("during") != "pass"
        )


def _fail_candidates(
    ledger: LedgerStore, name: str, failing: list[ReleaseVerdict], live: str, evidence: list[dict[str, Any]]
) -> None:
    """Mark each failing in-flight candidate ``failed`` with the guard's reason (the live one is not a candidate)."""
    for v in failing:
        row = ledger.release(name, v.id)
        if v.id != live and row is not None and row.status == "deploying":
            ledger.set_release(
                name, v.id, status="failed", outcome="failed", reason=v.reason, evidence=evidence, finished=True
            )


def _down(engine: Engine, name: str, live: ReleaseRow, verdicts: list[ReleaseVerdict]) -> GuardReport:
    """Every serving release is down: roll back to the last good release if it still runs ready, else say so."""
    ledger = engine.ledger
    reason = "guard: endpoint down: " + "; ".join(v.reason for v in verdicts)
    try:
        target = ledger.rollback_target(name, exclude=live.id)
    except NoPreviousReleaseError:
        target = None
    observed = engine.call(lambda: engine.provider.observe(name)) if target is not None else None
    ready = target is not None and observed is not None and observed.status != "failed" and (
        target.id in observed.releases and observed.releases[target.id].status == "ready"
    )
    if target is not None and ready:
        out = engine.rollback(name, to=target.id, reason=reason)
        ledger.set_release(name, live.id, outcome="failed")
        return GuardReport(name, "rolled_back", live.id, out.release, reason, releases=verdicts)
    ledger.journal(name, live.id, "guard", "down", detail={"reason": reason})
    fix = f"; redeploy it (`deployer deploy SPEC`) or `deployer rollback {name}` once the cause is fixed"
    return GuardReport(name, "endpoint_down", live.id, reason=reason + fix, releases=verdicts)
