"""Progressive delivery end to end on the local provider: real HTTP on 127.0.0.1, load from a second process.

Each test deploys a healthy v1, starts ``tests/local/load.py`` against the endpoint in a child
process (it writes its counts to a file, never to our output), rolls out v2 with a canary and
metric gates, and then judges the rollout by what the clients saw (the load file), by what the
provider serves (``observe``) and by what the ledger recorded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import deployer
from deployer.errors import GateFailedError
from deployer.events import Event
from deployer.ledger import Ledger
from deployer.local.provider import LocalProvider
from deployer.spec import Spec

from .load import Load, failures_by_release
from .models import canary, e2e_home_fixture, local_provider, model_spec, observed_weights, spec_dict  # noqa: F401 - a fixture

NAME = "shop"
ERROR_GATE = {"type": "metric", "name": "errors", "metric": "error_rate", "max": 0.01, "min_samples": 5}
P99_GATE = {"type": "metric", "name": "p99", "metric": "p99_ms", "max": 200, "min_samples": 3}


def spec(home: Path, kind: str, tag: str, **kw: Any) -> Spec:
    return Spec.model_validate(spec_dict(NAME, model_spec(kind, home.parent, tag), **kw))


def provider(home: Path) -> LocalProvider:
    return local_provider(home)


def weights(home: Path) -> dict[str, int]:
    return observed_weights(home, NAME)


class Events:
    """``on_event`` that keeps every event with its arrival time."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Event]] = []

    def __call__(self, e: Event) -> None:
        self.items.append((time.time(), e))

    def kinds(self, kind: str) -> list[Event]:
        return [e for _, e in self.items if e.kind == kind]

    def at(self, kind: str) -> float:
        return next(t for t, e in self.items if e.kind == kind)


def v1_under_load(home: Path, **load_kw: Any) -> tuple[str, Load]:
    ep = deployer.apply(spec(home, "healthy", "v1"))
    assert ep.last is not None and ep.last.release == "r0001"
    url = ep.url
    assert url and url.startswith("http://127.0.0.1:")
    load = Load(url, home.parent / "load.json", timeline=True, **{"seconds": 60, "concurrency": 4, **load_kw})
    load.wait_for(20)
    return url, load


def answered_after(data: dict[str, Any], t: float) -> dict[str, int]:
    """Answers by release (status:release) for requests sent after ``t``."""
    out: dict[str, int] = {}
    for sent, _, status, release in data["timeline"]:
        if sent > t:
            key = f"{status}:{release}"
            out[key] = out.get(key, 0) + 1
    return out


def failed_release(home: Path, rid: str = "r0002") -> Any:
    ledger = Ledger(home / "ledger.db")
    try:
        row = ledger.release(NAME, rid)
        live = ledger.live_release(NAME)
        ops = ledger.operations(NAME)
    finally:
        ledger.close()
    assert row is not None
    return row, live, ops


@pytest.mark.timeout(90)
def test_healthy_canary_promotes_through_every_step_without_a_failed_request(e2e_home: Path) -> None:
    _, load = v1_under_load(e2e_home, rps=200)
    events = Events()
    with load:
        out = deployer.apply(spec(e2e_home, "healthy", "v2", strategy=canary(10, 50, 100, bake_s=1.5),
                                  gates=[ERROR_GATE, P99_GATE]), on_event=events)
        time.sleep(0.5)
        data = load.stop()

    assert out.last is not None and (out.last.outcome, out.last.release) == ("deployed", "r0002")
    # every step was taken, in order, and each bake's gates passed
    routes = [e.weights for e in events.kinds("traffic.changed")]  # type: ignore[attr-defined]
    assert routes == [{"r0001": 90, "r0002": 10}, {"r0001": 50, "r0002": 50}, {"r0002": 100}]
    gates = events.kinds("gate.evaluated")
    assert gates and {g.outcome for g in gates} <= {"pass", "inconclusive"}  # type: ignore[attr-defined]
    assert [e.release for e in events.kinds("promoted")] == ["r0002"]  # type: ignore[attr-defined]
    assert weights(e2e_home) == {"r0002": 100}
    _, live, ops = failed_release(e2e_home)
    assert live is not None and live.id == "r0002"
    done = [o.step for o in ops if o.phase == "done" and o.release == "r0002"]
    assert [s for s in done if s.startswith(("route", "bake", "promote"))] == [
        "route:r0001=90,r0002=10", "bake:r0002", "route:r0001=50,r0002=50", "bake:r0002",
        "route:r0002=100", "bake:r0002", "promote:r0002",
    ]
    # the clients saw no failure at all, and both releases answered them
    assert data["failed"] == 0, {k: v for k, v in data.items() if k != "timeline"}
    assert data["transport_errors"] == {}
    assert data["releases"]["r0001"]["200"] > 50 and data["releases"]["r0002"]["200"] > 50, data["releases"]
    assert set(data["releases"]) == {"r0001", "r0002"}
    # after promotion every request went to v2
    assert set(answered_after(data, events.at("promoted") + 0.3)) == {"200:r0002"}


@pytest.mark.timeout(90)
def test_canary_failing_20_percent_is_rolled_back_at_the_first_step(e2e_home: Path) -> None:
    _, load = v1_under_load(e2e_home, rps=200)
    events = Events()
    with load:
        with pytest.raises(GateFailedError) as err:
            deployer.apply(spec(e2e_home, "flaky", "v2", strategy=canary(10, 50, 100, bake_s=2),
                                gates=[ERROR_GATE, P99_GATE]), on_event=events)
        time.sleep(1.0)
        data = load.stop()

    assert "errors" in str(err.value) and "error_rate" in str(err.value)
    # rolled back at the first step: the candidate never had more than 10%
    routes = [e.weights for e in events.kinds("traffic.changed")]  # type: ignore[attr-defined]
    assert routes == [{"r0001": 90, "r0002": 10}, {"r0001": 100}]
    rolled = events.kinds("rolled_back")
    assert [(e.from_release, e.to_release) for e in rolled] == [("r0002", "r0001")]  # type: ignore[attr-defined]
    assert weights(e2e_home) == {"r0001": 100}
    # the clients: the old release never failed; the candidate's model errors reached some of them
    failures = failures_by_release(data)
    assert failures.get("r0001", 0) == 0 and data["transport_errors"] == {}, data["releases"]
    assert failures["r0002"] > 0 and set(data["status"]) <= {"200", "500"}
    assert data["failed"] == failures["r0002"]
    # after the rollback every request was answered by v1
    assert set(answered_after(data, events.at("rolled_back") + 0.2)) == {"200:r0001"}
    # the ledger: v2 failed, with the failing gate's evidence; v1 is live
    row, live, ops = failed_release(e2e_home)
    assert live is not None and live.id == "r0001"
    assert row.status == "failed" and row.outcome == "failed" and "error_rate" in (row.reason or "")
    failing = [ev for ev in row.evidence if ev["outcome"] == "fail"]
    assert failing and failing[0]["gate"] == "errors"
    assert failing[0]["observed"]["errors"] > 0 and failing[0]["observed"]["value"] > 0.01
    assert failing[0]["threshold"]["max"] == 0.01
    assert err.value.evidence == row.evidence
    assert any(o.step == "rollback" and o.phase == "done" and o.release == "r0002" for o in ops)
    assert not any(o.step.startswith("route:r0001=50") for o in ops)


@pytest.mark.timeout(90)
def test_slow_canary_over_the_p99_threshold_is_rolled_back(e2e_home: Path) -> None:
    # the slow model holds its worker's event loop ~300 ms per call: keep the load light
    _, load = v1_under_load(e2e_home, rps=10, concurrency=4)
    events = Events()
    with load:
        with pytest.raises(GateFailedError) as err:
            deployer.apply(spec(e2e_home, "slow", "v2", strategy=canary(20, 100, bake_s=3),
                                gates=[ERROR_GATE, {**P99_GATE, "min_samples": 2}]), on_event=events)
        data = load.stop()

    assert "p99" in str(err.value)
    assert weights(e2e_home) == {"r0001": 100}
    row, live, _ = failed_release(e2e_home)
    assert live is not None and live.id == "r0001" and row.status == "failed"
    failing = [ev for ev in row.evidence if ev["outcome"] == "fail"]
    assert [ev["gate"] for ev in failing] == ["p99"] and failing[0]["observed"]["value"] >= 300
    # slow is not broken: no client saw an error
    assert data["failed"] == 0, {k: v for k, v in data.items() if k != "timeline"}
    assert data["releases"]["r0002"]["200"] > 0


@pytest.mark.timeout(90)
def test_a_gate_without_traffic_is_inconclusive_not_passed(e2e_home: Path) -> None:
    deployer.apply(spec(e2e_home, "healthy", "v1"))
    gates = [
        {**ERROR_GATE, "inconclusive": "fail"},
        # zero traffic is never a pass, even when the gate asks for no samples
        {"type": "metric", "name": "p99-any", "metric": "p99_ms", "max": 1000, "min_samples": 0,
         "inconclusive": "fail"},
    ]
    events = Events()
    with pytest.raises(GateFailedError) as err:
        deployer.apply(spec(e2e_home, "healthy", "v2", strategy=canary(10, 100, bake_s=1), gates=gates),
                       on_event=events)

    assert "inconclusive" in str(err.value)
    results = events.kinds("gate.evaluated")
    assert results and {g.outcome for g in results} == {"inconclusive"}  # type: ignore[attr-defined]
    assert all(g.observed["requests"] == 0 for g in results)  # type: ignore[attr-defined]
    assert weights(e2e_home) == {"r0001": 100}
    row, live, _ = failed_release(e2e_home)
    assert live is not None and live.id == "r0001"
    assert row.status == "failed" and "inconclusive" in (row.reason or "")
    assert row.evidence and {ev["outcome"] for ev in row.evidence} == {"inconclusive"}
    assert {ev["gate"] for ev in row.evidence} == {"errors", "p99-any"}


@pytest.mark.timeout(90)
def test_shadow_phase_judges_a_failing_candidate_on_copies_and_callers_never_see_it(e2e_home: Path) -> None:
    """strategy.shadow on the local provider: the candidate gets half the requests as copies, its errors
    feed its gate and fail the rollout, while every caller is answered by v1 and live traffic never moves."""
    _, load = v1_under_load(e2e_home, rps=200)
    events = Events()
    strategy = canary(50, 100, bake_s=1.5, shadow={"percent": 50, "bake_s": 2})
    with load:
        with pytest.raises(GateFailedError, match="error_rate"):
            deployer.apply(spec(e2e_home, "failing", "v2", strategy=strategy, gates=[ERROR_GATE]), on_event=events)
        time.sleep(0.3)
        data = load.stop()

    routes = [(e.weights, getattr(e, "mirror", None)) for e in events.kinds("traffic.changed")]  # type: ignore[attr-defined]
    assert all(w == {"r0001": 100} for w, _ in routes), routes  # live traffic never moved
    failed = [g for g in events.kinds("gate.evaluated") if g.outcome == "fail"]  # type: ignore[attr-defined]
    assert failed and float(failed[-1].observed["errors"]) > 0  # type: ignore[attr-defined]
    row, live, ops = failed_release(e2e_home)
    assert row.status == "failed" and live is not None and live.id == "r0001"
    assert any(o.step == "route:r0001=100;mirror:r0002=50" and o.phase == "done" for o in ops), [o.step for o in ops]
    obs = provider(e2e_home).observe(NAME)
    assert obs is not None and obs.traffic.weights == {"r0001": 100} and obs.traffic.mirror == {}
    # callers: every answer came from v1, none failed
    assert data["failed"] == 0 and data["transport_errors"] == {}, {k: v for k, v in data.items() if k != "timeline"}
    assert set(data["releases"]) == {"r0001"}
