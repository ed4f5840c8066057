"""Gates fed by late metrics: windows aligned to the provider's granularity, the delay waited out,
never the previous step's traffic, and ``plan`` refusing a bake too short to judge.

The provider is :class:`gate_fakes.TimedProvider`: its datapoints cover whole periods and appear a
delay after the period closes, and a window that does not start on a period boundary reads the
previous period too (as GetMetricData rounds StartTime down). Time is a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gate_fakes import TimedProvider, World, live_endpoint, release, spec

from deployer.errors import GateFailedError, SpecError
from deployer.events import Event
from deployer.gatekeeper import bake
from deployer.records import Capabilities, Metrics, Response, Traffic
from deployer.rollout import check_strategy
from deployer.spec import MetricGate
from deployer.waiting import FakeClock

pytestmark = pytest.mark.timeout(30)


def route_times(world: World) -> list[float]:
    return [t for t, _ in world.routes]


def test_bake_waits_for_datapoints_published_late(tmp_path: Path) -> None:
    """SageMaker-like metrics: one-minute datapoints, published 90 s after the minute closes.

    Judged at once (the old loop), the healthy candidate had no published requests and its gate
    (inconclusive: fail) failed the rollout; the bake waits for a whole published period instead."""
    world = World(granularity_s=60, delay_s=90, rps=5)
    engine, _, _ = live_endpoint(tmp_path, world)
    strategy = {"type": "canary", "steps": [{"weight": 20, "bake_s": 150}, {"weight": 100, "bake_s": 150}]}
    out = engine.deploy(spec(strategy), release("r0000"), None)
    assert out.outcome == "deployed" and out.release == "r0002"
    gate_rows = [o for o in engine.ledger.operations("churn") if o.step.startswith("gate:")]
    assert gate_rows and {o.phase for o in gate_rows} == {"pass"}


def test_windows_are_aligned_and_never_read_the_previous_step(tmp_path: Path) -> None:
    world = World(granularity_s=60, delay_s=90, rps=5)
    engine, _, _ = live_endpoint(tmp_path, world)
    strategy = {"type": "canary", "steps": [{"weight": 10, "bake_s": 150}, {"weight": 50, "bake_s": 150},
                                            {"weight": 100, "bake_s": 150}]}
    engine.deploy(spec(strategy), release("r0000"), None)
    routes = route_times(world)[-3:]  # the three traffic steps of r0002
    reads = [r for r in world.reads if r[1] == "r0002"]
    assert reads
    for now, _, start in reads:
        step_began = max(t for t in routes if t < now)  # a read at a route's instant came before it
        assert start >= step_began, f"a read at {now} starts at {start}, before its step began at {step_began}"
        assert start % 60 == 0
    # one evaluation per published period, not ten reads of the same datapoint
    times = sorted({now for now, _, _ in reads})
    assert all(b - a >= 60 for a, b in zip(times, times[1:], strict=False))


def test_a_failing_candidate_is_still_caught_when_metrics_are_late(tmp_path: Path) -> None:
    world = World(granularity_s=60, delay_s=90, rps=5, error_rate={"r0002": 0.2})
    engine, _, _ = live_endpoint(tmp_path, world)
    strategy = {"type": "canary", "steps": [{"weight": 20, "bake_s": 150}, {"weight": 100, "bake_s": 150}]}
    with pytest.raises(GateFailedError, match="error_rate"):
        engine.deploy(spec(strategy), release("r0000"), None)
    assert world.traffic() == Traffic.all_to("r0001")
    row = engine.ledger.release("churn", "r0002")
    assert row is not None and row.status == "failed"


def test_immediate_metrics_keep_the_short_interval(tmp_path: Path) -> None:
    """Granularity and delay 0 (local): the first round comes after a fifth of the bake, as before."""
    world = World(rps=20)
    engine, _, _ = live_endpoint(tmp_path, world)
    t0 = world.clock.now()
    engine.deploy(spec({"type": "blue-green", "bake_s": 5}), release("r0000"), None)
    reads = [now for now, rel, _ in world.reads if rel == "r0002"]
    assert reads[0] - t0 == pytest.approx(1.0)
    assert world.clock.now() - t0 == pytest.approx(5.0)


# --- plan refuses, offline, a bake too short to judge -------------------------------------------

LATE = Capabilities(metrics_granularity_s=60, metrics_delay_s=120, shadow=True)


@pytest.mark.parametrize(
    ("strategy", "field"),
    [
        ({"type": "canary", "steps": [{"weight": 10, "bake_s": 300}, {"weight": 100, "bake_s": 100}]},
         "strategy.steps[1].bake_s"),
        ({"type": "linear", "step_percent": 50, "interval_s": 60}, "strategy.interval_s"),
        ({"type": "blue-green", "bake_s": 179}, "strategy.bake_s"),
        ({"type": "all-at-once"}, "strategy.type"),
        ({"type": "blue-green", "bake_s": 200, "shadow": {"percent": 10, "bake_s": 30}}, "strategy.shadow.bake_s"),
    ],
)
def test_plan_refuses_a_bake_the_provider_cannot_judge(strategy: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as e:
        check_strategy(spec(strategy), LATE)
    assert e.value.field == field
    assert "180" in str(e.value)


def test_long_enough_bakes_and_bakes_without_gates_pass() -> None:
    check_strategy(spec({"type": "blue-green", "bake_s": 180}), LATE)
    check_strategy(spec({"type": "canary", "steps": [{"weight": 10, "bake_s": 1}, {"weight": 100, "bake_s": 0}]},
                     gates=[]), LATE)
    check_strategy(spec({"type": "all-at-once"}), Capabilities())


def test_plan_refuses_before_any_provider_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from deployer import api, registry

    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points", lambda: {"timed": "gate_fakes:TimedProvider"})
    world = World(granularity_s=60, delay_s=120)
    TimedProvider(world=world)
    s = spec({"type": "canary", "steps": [{"weight": 10, "bake_s": 60}, {"weight": 100, "bake_s": 600}]})
    for verb in (api.plan, api.apply):
        with pytest.raises(SpecError, match=r"strategy.steps\[0\].bake_s.*180"):
            verb(s)
    assert [c for c in world.calls if c[0] != "validate"] == []


# --- the bake loop alone, on a clock whose epoch is not its own ----------------------------------


@dataclass
class OffsetClock(FakeClock):
    """Like SystemClock: ``now()`` for deadlines counts from an arbitrary origin, ``wall()`` is epoch time."""

    offset: float = 0.0

    def wall(self) -> float:
        return self.t + self.offset


class Host:
    """The narrow interface the bake loop needs (no engine): provider, journal, emit, clock."""

    def __init__(self, clock: OffsetClock, granularity_s: float, delay_s: float) -> None:
        self.clock = clock
        self.ledger = self
        self.provider = self
        self.capabilities = Capabilities(metrics_granularity_s=granularity_s, metrics_delay_s=delay_s)
        self.rows: list[tuple[str, str]] = []
        self.events: list[Event] = []
        self.window_starts: list[float] = []

    def journal(self, endpoint: str, release: str | None, step: str, phase: str, *, detail: Any = None) -> int:
        self.rows.append((step, phase))
        return len(self.rows)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        self.window_starts.append(self.clock.wall() - window_s)
        return Metrics(release=release, window_s=window_s, requests=100, errors=0)

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        raise AssertionError("no smoke gate here")


def test_windows_align_to_epoch_periods_not_to_the_monotonic_clock() -> None:
    clock = OffsetClock(t=50.0, offset=1_000_000_000.25)  # now() 50 is epoch 1_000_000_050.25
    host = Host(clock, granularity_s=60, delay_s=30)
    began = clock.wall()
    evidence = bake(host, "churn", [MetricGate(metric="error_rate", max=0.01, min_samples=10)], "r0002", "r0001", 90)
    assert evidence and host.rows[0] == ("gate:metric:error_rate", "pass")
    assert [e.kind for e in host.events] == ["gate.evaluated"] * len(host.rows)
    first = host.window_starts[0]
    assert first == pytest.approx(1_000_000_080) and first >= began
    assert all(s == pytest.approx(first) for s in host.window_starts)
    assert clock.wall() >= first + 60 + 30  # a whole period after the window start, published
