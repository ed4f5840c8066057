"""A small in-memory provider for the bake loop, the guard and shadow rollouts.

Its metrics come from simulated traffic and arrive the way a cloud metrics service publishes them:

* ``rps`` requests per second arrive continuously, split by the current weights; a mirrored release
  receives a copy of ``mirror`` percent of them (its answers never reach callers).
* Each release fails ``error_rate[release]`` of the requests it serves.
* Requests are summed into datapoints of ``granularity_s`` aligned to the epoch (the clock's time is
  the epoch), and a datapoint is published ``delay_s`` after its period closes, as CloudWatch does
  with SageMaker's one-minute datapoints.
* ``metrics(window_s)`` reads the published datapoints whose period starts at or after
  ``now - window_s`` rounded *down* to the granularity, the way GetMetricData rounds a StartTime
  that is not aligned (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html,
  "StartTime"): a window that does not start on a boundary reads the previous period too.

With ``granularity_s == 0`` metrics are exact and immediate over ``[now - window_s, now]``.
Every call is recorded; writes refuse what the contract refuses (routing to a release that is not
ready, mirroring without ``capabilities.shadow``, retiring a release that still takes traffic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from deployer.engine import Engine
from deployer.errors import CapabilityError, ConflictError
from deployer.events import Event
from deployer.ledger import Ledger
from deployer.records import (
    Capabilities,
    Metrics,
    Observed,
    ObservedRelease,
    Operation,
    OperationStatus,
    Release,
    Response,
    Traffic,
)
from deployer.spec import Autoscaling, Spec
from deployer.waiting import FakeClock


@dataclass
class World:
    """The simulated endpoint: time, routes and what each release gets wrong."""

    clock: FakeClock = field(default_factory=lambda: FakeClock(t=1_000_000.5))
    rps: float = 10.0
    granularity_s: float = 0.0
    delay_s: float = 0.0
    shadow: bool = True
    error_rate: dict[str, float] = field(default_factory=dict)
    releases: dict[str, Release] = field(default_factory=dict)
    routes: list[tuple[float, Traffic]] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    reads: list[tuple[float, str, float]] = field(default_factory=list)
    """Each metrics read: (time, release, effective window start)."""

    def traffic(self) -> Traffic:
        return self.routes[-1][1] if self.routes else Traffic()

    def served(self, release: str, t0: float, t1: float) -> tuple[float, float]:
        """Requests and errors of ``release`` in ``[t0, t1)`` (fractions; rounded by the reader)."""
        requests = 0.0
        for i, (start, traffic) in enumerate(self.routes):
            end = self.routes[i + 1][0] if i + 1 < len(self.routes) else math.inf
            overlap = min(t1, end) - max(t0, start)
            if overlap <= 0:
                continue
            share = traffic.weights.get(release, 0) + traffic.mirror.get(release, 0)
            requests += self.rps * overlap * share / 100
        return requests, requests * self.error_rate.get(release, 0.0)

    def metrics(self, release: str, window_s: float) -> Metrics:
        now = self.clock.now()
        g = self.granularity_s
        if g <= 0:
            start = now - window_s
            self.reads.append((now, release, start))
            req, err = self.served(release, start, now)
        else:
            start = math.floor((now - window_s) / g) * g
            self.reads.append((now, release, start))
            req = err = 0.0
            b = start
            while b + g + self.delay_s <= now:  # only periods already published
                r, e = self.served(release, b, b + g)
                req, err = req + r, err + e
                b += g
        requests = round(req)
        return Metrics(
            release=release,
            window_s=window_s,
            requests=requests,
            errors=min(requests, round(err)),
            p50_ms=5.0 if requests else None,
            p99_ms=20.0 if requests else None,
        )


class TimedOptions(BaseModel):
    """No options."""


class TimedProvider:
    """The Provider protocol over a :class:`World`. Operations complete inside the call."""

    name: ClassVar[str] = "timed"
    Options: ClassVar[type[BaseModel]] = TimedOptions
    world: ClassVar[World] = World()
    """Shared by every instance, so a provider the core builds from the ledger sees the same endpoint."""

    def __init__(self, ctx: Any = None, world: World | None = None) -> None:
        if world is not None:
            type(self).world = world
        w = self.world
        self.capabilities = Capabilities(
            shadow=w.shadow,
            metrics_granularity_s=w.granularity_s,
            metrics_delay_s=w.delay_s,
            unsupported={} if w.shadow else {"shadow": "this test platform cannot copy requests"},
        )

    def _op(self, kind: Any, endpoint: str, release: str | None = None) -> Operation:
        return Operation(kind=kind, provider=self.name, endpoint=endpoint, release=release, done=True)

    def validate(self, spec: Spec) -> None:
        self.world.calls.append(("validate", spec.name))

    def store(self) -> Any:
        raise AssertionError("releases here carry no artifact")

    def observe(self, endpoint: str) -> Observed | None:
        w = self.world
        w.calls.append(("observe", endpoint))
        if not w.releases:
            return None
        return Observed(
            endpoint=endpoint,
            releases={
                r: ObservedRelease(id=r, status="ready", replicas=1, fingerprint=rel.fingerprint)
                for r, rel in w.releases.items()
            },
            traffic=w.traffic(),
        )

    def deploy_release(self, release: Release, traffic: Traffic) -> Operation:
        w = self.world
        w.calls.append(("deploy_release", release.id))
        w.releases[release.id] = release
        if traffic != w.traffic():
            w.routes.append((w.clock.now(), traffic))
        return self._op("deploy_release", release.endpoint, release.id)

    def route(self, endpoint: str, traffic: Traffic) -> Operation:
        w = self.world
        w.calls.append(("route", traffic))
        if traffic.mirror and not self.capabilities.shadow:
            raise CapabilityError(f"traffic.mirror: {self.capabilities.reason('shadow')}")
        missing = sorted((set(traffic.weights) | set(traffic.mirror)) - set(w.releases))
        if missing:
            raise ConflictError(f"cannot route to {', '.join(missing)}: not ready")
        w.routes.append((w.clock.now(), traffic))
        return self._op("route", endpoint)

    def scale(self, endpoint: str, release: str, autoscaling: Autoscaling) -> Operation:
        self.world.calls.append(("scale", release))
        return self._op("scale", endpoint, release)

    def retire_release(self, endpoint: str, release: str) -> Operation:
        w = self.world
        w.calls.append(("retire_release", release))
        t = w.traffic()
        if t.weights.get(release) or t.mirror.get(release):
            raise ConflictError(f"{release} still takes traffic ({t.model_dump()})")
        w.releases.pop(release, None)
        return self._op("retire_release", endpoint, release)

    def destroy(self, endpoint: str) -> Operation:
        self.world.calls.append(("destroy", endpoint))
        self.world.releases.clear()
        self.world.routes.append((self.world.clock.now(), Traffic()))
        return self._op("destroy", endpoint)

    def poll(self, op: Operation) -> OperationStatus:
        return OperationStatus(state="succeeded")

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        return self.world.metrics(release, window_s)

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        self.world.calls.append(("invoke", release))
        return Response(status=200, body={"predictions": [0]}, release=release or self.world.traffic().primary())

    def writes(self) -> list[tuple[str, Any]]:
        return [c for c in self.world.calls if c[0] not in ("validate", "observe", "invoke")]


def release(rid: str, fingerprint: str = "fp-new") -> Release:
    return Release(id=rid, endpoint="churn", fingerprint=fingerprint, flavor="container", image="registry/churn:1")


def spec(strategy: dict[str, Any], gates: list[dict[str, Any]] | None = None, **extra: Any) -> Spec:
    return Spec.model_validate(
        {
            "name": "churn",
            "target": {"provider": "timed"},
            "model": {"flavor": "container", "image": "registry/churn:1"},
            "strategy": strategy,
            "gates": gates if gates is not None else [ERROR_GATE],
            **extra,
        }
    )


SHARES: list[tuple[int | None, int | None]] = []


def note_shares(ctx: Any) -> bool:
    """A callable gate: note the candidate's live and mirrored shares it was judged at, and pass."""
    SHARES.append((ctx.weight, ctx.mirror))
    return True


ERROR_GATE: dict[str, Any] = {
    "type": "metric", "metric": "error_rate", "max": 0.05, "min_samples": 10, "inconclusive": "fail"
}


def live_endpoint(tmp_path: Path, world: World) -> tuple[Engine, TimedProvider, list[Event]]:
    """An endpoint serving r0001 (fingerprint ``fp-old``) at 100%."""
    events: list[Event] = []
    provider = TimedProvider(world=world)
    engine = Engine(provider, Ledger(tmp_path / "ledger.db"), clock=world.clock, on_event=events.append)
    engine.deploy(spec({"type": "all-at-once"}, gates=[]), release("r0000", "fp-old"), None)
    assert world.traffic() == Traffic.all_to("r0001")
    return engine, provider, events
