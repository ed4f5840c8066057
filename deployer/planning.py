"""Pure planning: (spec, observed state, ledger head) -> :class:`Plan`. No I/O, no writes.

A plan is an ordered list of :class:`Step` records plus a human diff. The engine executes steps
one by one, journaling each, so the same data drives ``deployer plan`` output, progress display
and crash recovery. The rollout part (traffic steps and bakes) comes from :mod:`deployer.rollout`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from deployer.errors import ConflictError
from deployer.records import Observed, Release, Traffic
from deployer.rollout import traffic_steps
from deployer.spec import Autoscaling, Spec

StepKind = Literal[
    "upload",
    "deploy_release",
    "route",
    "bake",
    "promote",
    "scale",
    "retire_release",
    "abandon",
    "repair",
    "destroy",
    "prune",
    "native_rollout",
]


@dataclass(frozen=True)
class Step:
    """One unit of work. ``weights`` and ``mirror`` for route; ``bake_s`` for bake; ``release`` it concerns."""

    kind: StepKind
    release: str | None = None
    weights: dict[str, int] = field(default_factory=dict)
    bake_s: float = 0.0
    note: str = ""
    mirror: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Stable name used in the journal: ``route:r0002=25``, ``route:r0001=100;mirror:r0002=20``."""
        if self.kind == "route":
            name = "route:" + _pairs(self.weights)
            return name + (";mirror:" + _pairs(self.mirror) if self.mirror else "")
        return f"{self.kind}:{self.release}" if self.release else self.kind

    @property
    def traffic(self) -> Traffic:
        """What a route step sets."""
        return Traffic(weights=self.weights, mirror=self.mirror)

    def describe(self) -> str:
        if self.kind == "route":
            return "traffic " + _fmt(self.traffic)
        if self.kind == "bake":
            return f"bake {self.bake_s:g}s on {self.release} with gates"
        return f"{self.kind.replace('_', ' ')} {self.release or ''}".strip() + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class LedgerHead:
    """What the ledger knows that planning needs."""

    live: Release | None = None
    live_autoscaling: Autoscaling | None = None
    """The autoscaling last applied to the live release (its ledger row), None when never scaled."""
    in_flight: Release | None = None
    next_id: str = "r0001"
    head_op: int = 0
    fingerprints: dict[str, str] = field(default_factory=dict)
    """Every release of the endpoint the ledger knows: id -> fingerprint."""
    statuses: dict[str, str] = field(default_factory=dict)
    """Every release of the endpoint the ledger knows: id -> ledger status."""


PRESENT = ("ready", "updating")
"""Observed release states that mean "it serves": "updating" (autoscaling, maintenance) is not "lost"."""


def foreign_releases(observed: Observed | None, fingerprints: dict[str, str]) -> list[str]:
    """Releases on the endpoint this ledger did not make, described for an error message.

    A release is foreign when the ledger does not know its id, or when the fingerprint read from the
    resource differs from the ledger row's (another ledger reused the id). A resource that reports no
    fingerprint is matched by id alone.
    """
    out = []
    for rid, rel in sorted((observed.releases if observed else {}).items()):
        known = fingerprints.get(rid)
        seen = rel.fingerprint[:12] if rel.fingerprint else "none"
        if known is None:
            out.append(f"{rid} (fingerprint {seen}, not in this ledger)")
        elif rel.fingerprint is not None and rel.fingerprint != known:
            out.append(f"{rid} (fingerprint {seen}, this ledger's {rid} is {known[:12]})")
    return out


def check_owned(endpoint: str, observed: Observed | None, head: LedgerHead, ledger: str) -> None:
    """Raise :class:`ConflictError` when ``endpoint`` serves releases this ledger does not know.

    Called before every write (deploy, rollback, scale, destroy): another machine or CI run with its own
    ledger made them, so changing the endpoint would serve or delete what nobody here can name.
    """
    foreign = foreign_releases(observed, head.fingerprints)
    if foreign:
        raise ConflictError(
            f"endpoint {endpoint!r} serves release(s) the ledger at {ledger} does not know: {'; '.join(foreign)}",
            hint=f"take it over with `deployer adopt {endpoint} --spec SPEC`, or deploy with the ledger that made "
            "them (spec.state.path / --state / DEPLOYER_HOME)",
        )


@dataclass(frozen=True)
class Plan:
    endpoint: str
    release: Release | None
    """The release the plan makes live (new, resumed or unchanged)."""
    baseline: str | None
    """The release serving before the plan (rollback target on failure)."""
    steps: list[Step]
    diff: list[str]
    basis: tuple[Any, ...] = ()
    """What the plan was computed from; ``apply`` refuses a plan whose basis moved."""

    @property
    def noop(self) -> bool:
        return not self.steps

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "release": self.release.id if self.release else None,
            "baseline": self.baseline,
            "noop": self.noop,
            "steps": [s.describe() for s in self.steps],
            "diff": self.diff,
        }


def make_plan(
    spec: Spec,
    candidate: Release,
    observed: Observed | None,
    head: LedgerHead,
    *,
    artifact_present: bool,
) -> Plan:
    """Decide what to do so the endpoint serves ``candidate`` (a release whose id may be provisional).

    * Same fingerprint as the live release, and the provider shows it ready with all traffic:
      nothing, or only a ``scale`` step when autoscaling changed.
    * Same fingerprint as the live release but the provider lost it: ``repair`` (redeploy it).
    * A crashed rollout of the same fingerprint: resume it under its own id.
    * A crashed rollout of another fingerprint: ``abandon`` it (traffic back, retire), then roll out.
    * Otherwise a new release rolled out with the spec's strategy.
    """
    steps: list[Step] = []
    diff: list[str] = []
    live = head.live
    observed_ids = set(observed.releases) if observed else set()
    traffic = observed.traffic if observed else Traffic()
    basis = (head.head_op, live.id if live else None, tuple(sorted(traffic.weights.items())))

    if head.in_flight is not None and head.in_flight.fingerprint != candidate.fingerprint:
        steps.append(Step("abandon", head.in_flight.id, note="a crashed rollout of a different spec"))
        diff.append(f"- abandon {head.in_flight.id} (left by an interrupted deploy)")
        head_in_flight = None
    else:
        head_in_flight = head.in_flight

    if live is not None and live.fingerprint == candidate.fingerprint and head_in_flight is None:
        ready = observed is not None and live.id in observed_ids and observed.releases[live.id].status in PRESENT
        if not ready:
            steps.append(Step("repair", live.id, note="the provider no longer serves it"))
            steps.append(Step("route", live.id, weights={live.id: 100}))
            diff.append(f"~ repair {live.id}: redeploy it, the provider no longer serves it")
        elif traffic.weights != {live.id: 100} or traffic.mirror:
            steps.append(Step("route", live.id, weights={live.id: 100}))
            diff.append(f"~ traffic {_fmt(traffic)} -> {live.id} 100%")
        if spec.autoscaling is not None and spec.autoscaling != head.live_autoscaling:
            steps.append(Step("scale", live.id, note=f"min {spec.autoscaling.min}, max {spec.autoscaling.max}"))
            diff.append(f"~ autoscaling of {live.id}: min {spec.autoscaling.min}, max {spec.autoscaling.max}")
        for rid in _leftovers(spec, observed, head, live.id):
            steps.append(Step("retire_release", rid, note="left running at 0%"))
            diff.append(f"- retire {rid} (left running with no traffic; its artifact stays)")
        return Plan(spec.name, live, live.id, steps, diff, basis)

    if head_in_flight is not None:
        # same fingerprint, so the same digest: take the candidate's ref (the crash may have come
        # before the upload finished and the ledger's record has no stored URI yet)
        release = head_in_flight.model_copy(update={"artifact": candidate.artifact})
        diff.append(f"~ resume {release.id} (interrupted rollout of the same spec)")
    else:
        release = candidate.model_copy(update={"id": head.next_id})
        art = f"sha256:{release.artifact.digest[:12]}" if release.artifact else (spec.model.image or spec.model.uri)
        diff.append(f"+ release {release.id}: {spec.model.flavor} {art}, {spec.resources.replicas} replica(s)")
    if release.artifact is not None and not artifact_present:
        steps.append(Step("upload", release.id, note=f"{release.artifact.size} bytes"))
        diff.append(f"+ upload artifact sha256:{release.artifact.digest[:12]} ({release.artifact.size} bytes)")

    baseline = live.id if live is not None and live.id in observed_ids else None
    if spec.strategy.native and baseline is not None:
        steps.append(Step("native_rollout", release.id, note=f"the provider's own {spec.strategy.type} with alarms"))
        steps.append(Step("promote", release.id))
        diff.append(f"~ traffic {baseline} -> {release.id} by the provider's native {spec.strategy.type}")
        return Plan(spec.name, release, baseline, steps, diff, basis)
    steps.append(Step("deploy_release", release.id, note="at 0% traffic" if baseline else "new endpoint"))
    if spec.autoscaling is not None:
        steps.append(Step("scale", release.id, note=f"min {spec.autoscaling.min}, max {spec.autoscaling.max}"))
    current = traffic.weights.get(release.id, 0) if head_in_flight is not None else 0
    for ts in traffic_steps(spec.strategy, has_baseline=baseline is not None):
        if ts.weight < current:
            continue
        weights = Traffic.split(release.id, ts.weight, baseline).weights
        mirror = {release.id: ts.mirror} if ts.mirror else {}
        steps.append(Step("route", release.id, weights=weights, mirror=mirror))
        if ts.bake_s is not None and (ts.bake_s > 0 or (spec.gates and baseline is not None)):
            steps.append(Step("bake", release.id, bake_s=ts.bake_s))
    steps.append(Step("promote", release.id))
    if baseline is not None:
        diff.append(f"~ traffic {baseline} -> {release.id} by {spec.strategy.type}")
        if not spec.strategy.keep_previous_warm:
            steps.append(Step("retire_release", baseline, note="superseded"))
            diff.append(f"- retire {baseline} (kept as a rollback target: its artifact stays)")
    for rid in sorted(observed_ids - {release.id, baseline or ""}):
        if observed is not None and observed.traffic.weights.get(rid, 0) == 0:
            steps.append(Step("retire_release", rid, note="not serving"))
            diff.append(f"- retire {rid} (running with no traffic)")
    return Plan(spec.name, release, baseline, steps, diff, basis)


def _leftovers(spec: Spec, observed: Observed | None, head: LedgerHead, live: str) -> list[str]:
    """Releases the ledger is done with that still run at 0% (e.g. a crash between promotion and retirement).

    Kept: failed candidates (``strategy.retire_failed`` keeps them for inspection), in-flight ones, and
    with ``strategy.keep_previous_warm`` the newest release that was live before.
    """
    if observed is None:
        return []
    idle = [
        rid
        for rid in sorted(observed.releases)
        if rid != live
        and observed.traffic.weights.get(rid, 0) == 0
        and observed.traffic.mirror.get(rid, 0) == 0
        and head.statuses.get(rid) in ("superseded", "rolled_back", "abandoned")
    ]
    if spec.strategy.keep_previous_warm:
        warm = [rid for rid in idle if head.statuses.get(rid) in ("superseded", "rolled_back")]
        idle = [rid for rid in idle if not warm or rid != max(warm)]
    return idle


def _pairs(shares: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(shares.items()))


def _fmt(t: Traffic) -> str:
    mirror = "".join(f", mirror {k} {v}%" for k, v in sorted(t.mirror.items()))
    return (", ".join(f"{k} {v}%" for k, v in sorted(t.weights.items())) or "none") + mirror
