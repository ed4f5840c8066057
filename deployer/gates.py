"""Health gates: decisions as data.

A gate is evaluated many times while a rollout step bakes. Each evaluation returns a
:class:`GateResult` (pass, fail or inconclusive, with what was observed and why); a
:class:`GateTracker` turns the sequence of results of one gate into a verdict; a :class:`GateSet`
does both for all gates of a spec and keeps every result as evidence for the ledger. Nothing here
routes traffic or rolls back: the engine reads :meth:`GateSet.decision` and acts.

Rules of one evaluation (:func:`evaluate`)
------------------------------------------
*metric* (:class:`~deployer.spec.MetricGate`), read from ``provider.metrics(endpoint, release, window_s)``:

* The candidate must have served at least ``max(min_samples, 1)`` requests in the window, otherwise
  the result is **inconclusive**. Zero traffic is never a pass, whatever ``min_samples`` says.
* The value is ``error_rate`` (errors / requests), ``p50_ms``, ``p99_ms``, ``requests`` or
  ``custom[custom_metric]``. A value the provider did not report is **inconclusive**.
* ``max``: pass while ``value <= max``. ``min``: pass while ``value >= min``. Both may be given.
* ``baseline_delta``: pass while ``value <= baseline_value + baseline_delta`` where the baseline is
  the same metric of the baseline release over the same window. The baseline must also have served
  ``max(min_samples, 1)`` requests and report the value, else the result is **inconclusive**. With no
  baseline release (the first release of an endpoint) the comparison is skipped and the result
  says so; the other bounds still apply, and a gate with only ``baseline_delta`` then passes on the
  candidate's sample count alone.
* Every bound that is violated is named in ``reason``; any violation is a **fail**. A failed
  comparison wins over an inconclusive baseline (a candidate above ``max`` fails even when the
  baseline cannot be read).
* A :class:`~deployer.errors.ProviderError` while reading metrics is **inconclusive** (not judged).

*smoke* (:class:`~deployer.spec.SmokeGate`): one ``provider.invoke(endpoint, payload, release=candidate)``.

* **fail** when the status differs from ``expect_status`` or the body does not match
  ``expect_schema`` (see :func:`check_schema`; a str/bytes body is parsed as JSON first).
* **inconclusive** when the provider answers from another release than the candidate, or raises
  :class:`~deployer.errors.TransientError`; any other ``ProviderError`` is a **fail**.

*callable* (:class:`~deployer.spec.CallableGate`): ``module:function`` is imported and called with
the :class:`GateContext`. ``True`` passes, ``False`` fails, a :class:`GateResult` is taken as is
(gate name, type, release, baseline and time are stamped from the gate and context). Any other
return value, an import error or an exception raised by the function is a **fail** whose
``reason`` names the exception.

*webhook* (:class:`~deployer.spec.WebhookGate`): POST ``GateContext.to_dict()`` plus the gate name
as JSON to ``url`` with ``timeout_s``. Any 2xx status passes, any other status fails; a connection
error or timeout (``OSError`` from the poster) is **inconclusive**.

Rules across evaluations (:class:`GateTracker`)
-----------------------------------------------
* *failures* counts every ``fail`` since the tracker started (a pass in between does not reset
  it, so a flapping candidate cannot pass). When failures reach ``failure_limit`` the gate is
  **fail**, and stays failed.
* *streak* counts consecutive ``pass`` results; a ``fail`` or an ``inconclusive`` resets it to 0.
  While the streak is at least ``successes_required`` (and the gate has not failed) it is **pass**.
* Otherwise it is **pending**. What a pending gate becomes depends on the phase:

  - ``"during"`` the bake: pending.
  - ``"bake_end"``: if the latest result was inconclusive (or nothing was evaluated), the gate's
    ``inconclusive`` policy applies: ``"fail"`` -> fail, ``"pass"`` -> pass, ``"wait"`` -> pending
    (the engine keeps baking, up to its own limit). If the latest result was conclusive but the
    counts are not reached yet (e.g. 2 of 3 passes), pending: the engine keeps baking.
  - ``"deadline"`` (:meth:`GateTracker.final`): always pass or fail. Inconclusive under policy
    ``"pass"`` passes; inconclusive under ``"wait"`` or ``"fail"`` fails with reason
    ``"inconclusive at deadline"``; too few consecutive passes fails.

:class:`GateSet` combines the gates: **fail** as soon as any gate fails, **pass** when every gate
passes, **pending** otherwise. No gates configured is **pass**.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from deployer.errors import ProviderError, TransientError
from deployer.events import GateEvaluated
from deployer.notify import Poster, post_json
from deployer.records import Metrics, Response
from deployer.spec import CallableGate, MetricGate, SmokeGate, WebhookGate

Outcome = Literal["pass", "fail", "inconclusive"]
Decision = Literal["pass", "fail", "pending"]
Phase = Literal["during", "bake_end", "deadline"]


def reads_metrics(gates: Any) -> bool:
    """Whether any gate judges the provider's metrics (only those wait for late, coarse datapoints)."""
    return any(getattr(g, "type", None) == "metric" for g in gates)
Scalar = float | int | str | bool | None
AnyGate = MetricGate | SmokeGate | CallableGate | WebhookGate


class MetricsProvider(Protocol):
    """The part of :class:`~deployer.protocols.Provider` gates use."""

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics: ...

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response: ...


@dataclass(frozen=True)
class GateResult:
    """One evaluation of one gate: the decision and the evidence behind it.

    ``observed`` holds what was measured (e.g. ``{"requests": 120, "value": 0.02}``), ``threshold``
    what it was compared with (e.g. ``{"max": 0.01, "min_samples": 50}``). Both hold scalars only, so
    :meth:`to_dict` is JSON-safe and goes into the ledger unchanged.
    """

    gate: str
    type: str
    outcome: Outcome
    reason: str
    release: str = ""
    baseline: str | None = None
    observed: dict[str, Scalar] = field(default_factory=dict)
    threshold: dict[str, Scalar] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "type": self.type,
            "outcome": self.outcome,
            "reason": self.reason,
            "release": self.release,
            "baseline": self.baseline,
            "observed": {k: _scalar(v) for k, v in self.observed.items()},
            "threshold": {k: _scalar(v) for k, v in self.threshold.items()},
            "at": self.at,
        }

    def to_event(self, endpoint: str) -> GateEvaluated:
        """The :class:`~deployer.events.GateEvaluated` event the engine emits for this result."""
        return GateEvaluated(
            endpoint=endpoint,
            release=self.release,
            gate=self.gate,
            outcome=self.outcome,
            observed=self.to_dict()["observed"],
            reason=self.reason,
            at=self.at,
        )


def _scalar(v: Any) -> Scalar:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else str(v)
    return str(v)


@dataclass(frozen=True)
class GateContext:
    """What a gate evaluation may look at.

    ``provider`` is anything with ``metrics()`` and ``invoke()`` as in the Provider protocol.
    ``post(url, body, timeout_s) -> status`` sends webhook gates (default: httpx, imported lazily);
    it raises ``OSError`` (``ConnectionError``, ``TimeoutError``) when the URL cannot be reached.
    ``clock`` stamps results. ``weight`` is the candidate's share of live traffic in this step, ``mirror``
    the share of requests copied to it (a shadow phase; its answers reach no caller).
    """

    endpoint: str
    release: str
    provider: MetricsProvider
    baseline: str | None = None
    window_s: float = 300.0
    weight: int | None = None
    mirror: int | None = None
    post: Poster = post_json
    clock: Callable[[], float] = time.time

    def to_dict(self) -> dict[str, Any]:
        """The JSON body a webhook gate receives."""
        return {
            "endpoint": self.endpoint,
            "release": self.release,
            "baseline": self.baseline,
            "window_s": self.window_s,
            "weight": self.weight,
            "mirror": self.mirror,
            "at": self.clock(),
        }


def gate_name(gate: AnyGate) -> str:
    """The gate's ``name`` or a readable default: ``metric:error_rate``, ``smoke``, ``callable:m:f``."""
    if gate.name:
        return gate.name
    if isinstance(gate, MetricGate):
        return f"metric:{gate.custom_metric if gate.metric == 'custom' else gate.metric}"
    if isinstance(gate, CallableGate):
        return f"callable:{gate.function}"
    return gate.type


def evaluate(gate: AnyGate, ctx: GateContext, *, name: str | None = None) -> GateResult:
    """Evaluate ``gate`` once against ``ctx``; the rules are in the module docstring.

    Never raises for a provider or user failure: those become ``fail`` or ``inconclusive`` results.
    """
    label = name or gate_name(gate)
    if isinstance(gate, MetricGate):
        return _metric(gate, ctx, label)
    if isinstance(gate, SmokeGate):
        return _smoke(gate, ctx, label)
    if isinstance(gate, CallableGate):
        return _callable(gate, ctx, label)
    return _webhook(gate, ctx, label)


def _result(
    gate: AnyGate, ctx: GateContext, name: str, outcome: Outcome, reason: str, **kw: Any
) -> GateResult:
    return GateResult(
        gate=name, type=gate.type, outcome=outcome, reason=reason, release=ctx.release,
        baseline=ctx.baseline, at=ctx.clock(), **kw,
    )


def _metric_value(gate: MetricGate, m: Metrics) -> float | None:
    if gate.metric == "error_rate":
        return m.error_rate
    if gate.metric == "requests":
        return float(m.requests)
    if gate.metric == "custom":
        return m.custom.get(gate.custom_metric or "")
    return m.p50_ms if gate.metric == "p50_ms" else m.p99_ms


def _metric(gate: MetricGate, ctx: GateContext, name: str) -> GateResult:
    label = gate.custom_metric if gate.metric == "custom" else gate.metric
    need = max(gate.min_samples, 1)
    threshold: dict[str, Scalar] = {"min_samples": gate.min_samples}
    for k in ("max", "min", "baseline_delta"):
        if getattr(gate, k) is not None:
            threshold[k] = getattr(gate, k)
    observed: dict[str, Scalar] = {}

    def done(outcome: Outcome, reason: str) -> GateResult:
        return _result(gate, ctx, name, outcome, reason, observed=observed, threshold=threshold)

    try:
        m = ctx.provider.metrics(ctx.endpoint, ctx.release, ctx.window_s)
    except ProviderError as e:
        return done("inconclusive", f"metrics of {ctx.release} unavailable: {e}")
    observed.update(requests=m.requests, errors=m.errors)
    if m.requests < need:
        return done("inconclusive",
                    f"{m.requests} requests in {ctx.window_s:g}s, need {need} to judge {label}")
    value = _metric_value(gate, m)
    observed["value"] = value
    if value is None:
        return done("inconclusive", f"provider reported no {label} for {ctx.release}")

    violations: list[str] = []
    if gate.max is not None and value > gate.max:
        violations.append(f"{label} {value:g} > max {gate.max:g}")
    if gate.min is not None and value < gate.min:
        violations.append(f"{label} {value:g} < min {gate.min:g}")
    unknown = ""
    if gate.baseline_delta is not None:
        if ctx.baseline is None:
            unknown = "no baseline release to compare with"
            observed["baseline_value"] = None
        else:
            try:
                b = ctx.provider.metrics(ctx.endpoint, ctx.baseline, ctx.window_s)
            except ProviderError as e:
                b = None
                unknown = f"metrics of baseline {ctx.baseline} unavailable: {e}"
            if b is not None:
                bvalue = _metric_value(gate, b)
                observed.update(baseline_requests=b.requests, baseline_value=bvalue)
                if b.requests < need:
                    unknown = f"baseline {ctx.baseline} has {b.requests} requests, need {need}"
                elif bvalue is None:
                    unknown = f"provider reported no {label} for baseline {ctx.baseline}"
                elif value > bvalue + gate.baseline_delta:
                    violations.append(
                        f"{label} {value:g} > baseline {bvalue:g} + delta {gate.baseline_delta:g}"
                    )
    if violations:
        return done("fail", "; ".join(violations))
    if unknown and ctx.baseline is not None:
        return done("inconclusive", unknown)
    reason = f"{label} {value:g} within bounds over {m.requests} requests"
    return done("pass", f"{reason} ({unknown})" if unknown else reason)


def _smoke(gate: SmokeGate, ctx: GateContext, name: str) -> GateResult:
    threshold: dict[str, Scalar] = {"expect_status": gate.expect_status,
                                    "expect_schema": gate.expect_schema is not None}
    try:
        resp = ctx.provider.invoke(ctx.endpoint, gate.payload, release=ctx.release)
    except TransientError as e:
        return _result(gate, ctx, name, "inconclusive", f"invoke failed transiently: {e}",
                       threshold=threshold)
    except ProviderError as e:
        return _result(gate, ctx, name, "fail", f"invoke failed: {e}", threshold=threshold)
    observed: dict[str, Scalar] = {"status": resp.status, "latency_ms": resp.latency_ms,
                                   "answered_by": resp.release}
    if resp.release is not None and resp.release != ctx.release:
        return _result(gate, ctx, name, "inconclusive",
                       f"answered by {resp.release}, not the candidate {ctx.release}",
                       observed=observed, threshold=threshold)
    if resp.status != gate.expect_status:
        return _result(gate, ctx, name, "fail", f"status {resp.status}, expected {gate.expect_status}",
                       observed=observed, threshold=threshold)
    if gate.expect_schema is not None:
        body = resp.body
        if isinstance(body, bytes | str):
            try:
                body = json.loads(body)
            except ValueError:
                return _result(gate, ctx, name, "fail", "body is not JSON", observed=observed,
                               threshold=threshold)
        errors = check_schema(body, gate.expect_schema)
        if errors:
            observed["schema_errors"] = len(errors)
            return _result(gate, ctx, name, "fail", "body does not match schema: " + "; ".join(errors[:3]),
                           observed=observed, threshold=threshold)
    return _result(gate, ctx, name, "pass", f"status {resp.status}" + (
        " and body matches schema" if gate.expect_schema is not None else ""),
        observed=observed, threshold=threshold)


def _callable(gate: CallableGate, ctx: GateContext, name: str) -> GateResult:
    threshold: dict[str, Scalar] = {"function": gate.function}
    module, _, attr = gate.function.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
        out = fn(ctx)
    except Exception as e:  # a user function: any failure is the gate's failure
        return _result(gate, ctx, name, "fail", f"{gate.function} raised {type(e).__name__}: {e}",
                       threshold=threshold)
    if isinstance(out, GateResult):
        return dataclasses.replace(out, gate=name, type=gate.type, release=ctx.release,
                                   baseline=ctx.baseline, at=ctx.clock(),
                                   threshold={**threshold, **out.threshold})
    if isinstance(out, bool):
        return _result(gate, ctx, name, "pass" if out else "fail",
                       f"{gate.function} returned {out}", threshold=threshold)
    return _result(gate, ctx, name, "fail",
                   f"{gate.function} returned {type(out).__name__}; return a bool or a GateResult",
                   threshold=threshold)


def _webhook(gate: WebhookGate, ctx: GateContext, name: str) -> GateResult:
    threshold: dict[str, Scalar] = {"url": gate.url, "timeout_s": gate.timeout_s}
    body = {**ctx.to_dict(), "gate": name}
    try:
        status = ctx.post(gate.url, body, gate.timeout_s)
    except OSError as e:
        return _result(gate, ctx, name, "inconclusive", f"{gate.url} unreachable: {type(e).__name__}: {e}",
                       threshold=threshold)
    observed: dict[str, Scalar] = {"status": status}
    if 200 <= status < 300:
        return _result(gate, ctx, name, "pass", f"webhook answered {status}", observed=observed,
                       threshold=threshold)
    return _result(gate, ctx, name, "fail", f"webhook answered {status}", observed=observed,
                   threshold=threshold)


# --- a small JSON-schema subset -----------------------------------------------------------------

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list | tuple),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def check_schema(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Check ``value`` against a JSON-schema subset; return the mismatches (empty: it matches).

    Supported keywords: ``type`` (a name or a list of names among object, array, string, integer,
    number, boolean, null), ``properties`` (each present key checked against its schema),
    ``required`` (keys that must be present) and ``items`` (one schema for every element). Other
    keywords are ignored. Each message starts with a JSON path such as ``$.predictions[0]``.
    """
    errors: list[str] = []
    want = schema.get("type")
    if want is not None:
        names = [want] if isinstance(want, str) else list(want)
        if not any(_TYPES.get(n, lambda _: False)(value) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {_json_type(value)}"]
    if isinstance(value, dict):
        errors += [f"{path}: missing required {k!r}" for k in schema.get("required", []) if k not in value]
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                errors += check_schema(value[k], sub, f"{path}.{k}")
    if isinstance(value, list | tuple) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += check_schema(item, schema["items"], f"{path}[{i}]")
    return errors


def _json_type(v: Any) -> str:
    for n in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[n](v):
            return n
    return type(v).__name__


# --- verdicts across evaluations ----------------------------------------------------------------


class GateTracker:
    """The state of one gate across the evaluations of one bake; rules in the module docstring."""

    def __init__(self, gate: AnyGate, name: str | None = None) -> None:
        self.gate = gate
        self.name = name or gate_name(gate)
        self.results: list[GateResult] = []
        self.streak = 0
        self.failures = 0

    def record(self, result: GateResult) -> None:
        """Add one evaluation's result."""
        self.results.append(result)
        if result.outcome == "pass":
            self.streak += 1
        else:
            self.streak = 0
        if result.outcome == "fail":
            self.failures += 1

    @property
    def last(self) -> GateResult | None:
        return self.results[-1] if self.results else None

    def verdict(self, phase: Phase = "during") -> Decision:
        """``pass``, ``fail`` or ``pending`` for ``phase`` (``deadline`` never returns pending)."""
        return self._decide(phase)[0]

    def reason(self, phase: Phase = "during") -> str:
        """Why :meth:`verdict` says what it says, for events and error messages."""
        return self._decide(phase)[1]

    def final(self) -> tuple[Decision, str]:
        """The verdict at the deadline, with its reason: always ``pass`` or ``fail``."""
        return self._decide("deadline")

    def _decide(self, phase: Phase) -> tuple[Decision, str]:
        g = self.gate
        last = self.last
        if self.failures >= g.failure_limit:
            why = last.reason if last is not None and last.outcome == "fail" else "failed"
            return "fail", f"{self.failures} failure(s), limit {g.failure_limit}: {why}"
        if self.streak >= g.successes_required:
            return "pass", f"{self.streak} consecutive pass(es), {g.successes_required} required"
        if phase == "during":
            return "pending", self._progress()
        undecided = last is None or last.outcome == "inconclusive"
        if undecided:
            why = last.reason if last is not None else "never evaluated"
            if g.inconclusive == "pass":
                return "pass", f"inconclusive, policy pass: {why}"
            if g.inconclusive == "fail":
                return "fail", f"inconclusive, policy fail: {why}"
            if phase == "bake_end":
                return "pending", f"inconclusive, waiting: {why}"
            return "fail", f"inconclusive at deadline: {why}"
        if phase == "bake_end":
            return "pending", self._progress()
        return "fail", f"not proven at deadline: {self._progress()}"

    def _progress(self) -> str:
        g = self.gate
        return (
            f"{self.streak}/{g.successes_required} consecutive passes, "
            f"{self.failures}/{g.failure_limit} failures"
        )


class GateSet:
    """All gates of a rollout step: evaluate them together and decide.

    ``decision(phase)`` is ``fail`` when any gate's verdict is fail, ``pass`` when every gate's is
    pass (including when there are no gates), ``pending`` otherwise. Every result of every round is
    kept in :attr:`results`; :meth:`evidence` returns them JSON-safe for the ledger.
    """

    def __init__(self, gates: Sequence[AnyGate]) -> None:
        names: dict[str, int] = {}
        self.trackers: list[GateTracker] = []
        for g in gates:
            base = gate_name(g)
            names[base] = names.get(base, 0) + 1
            self.trackers.append(GateTracker(g, base if names[base] == 1 else f"{base}#{names[base]}"))
        self.results: list[GateResult] = []

    def evaluate_round(self, ctx: GateContext) -> list[GateResult]:
        """Evaluate every gate once and record the results (gates that already passed included:
        a passed gate that fails again loses its pass)."""
        out = [evaluate(t.gate, ctx, name=t.name) for t in self.trackers]
        for t, r in zip(self.trackers, out, strict=True):
            t.record(r)
        self.results.extend(out)
        return out

    def decision(self, phase: Phase = "during") -> Decision:
        verdicts = [t.verdict(phase) for t in self.trackers]
        if "fail" in verdicts:
            return "fail"
        return "pass" if all(v == "pass" for v in verdicts) else "pending"

    def final(self) -> Decision:
        """The decision at the deadline: ``pass`` or ``fail``."""
        return self.decision("deadline")

    def reasons(self, phase: Phase = "during") -> dict[str, str]:
        """Verdict reason by gate name, for the gates that are not passing."""
        return {t.name: t.reason(phase) for t in self.trackers if t.verdict(phase) != "pass"}

    def evidence(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.results]
