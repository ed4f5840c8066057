"""The engine: applies a plan through a provider, journaling every step in the ledger.

Rules (DESIGN.md, "Rules of the engine"):

* Every step is journaled ``started`` before it is sent and ``done`` / ``failed`` after, so a killed
  process is resumed by running ``deploy`` again (the planner reads the ledger's in-flight release).
* One lock per endpoint for the whole change.
* Before any write (deploy, rollback, scale, destroy) the endpoint's observed releases are compared
  with the ledger: one it does not know, or one whose fingerprint differs, is a
  :class:`~deployer.errors.ConflictError` naming it (:func:`deployer.planning.check_owned`). One the
  ledger records as running that the provider no longer has is marked not running on ``deploy``,
  journaled ``reconcile`` (:meth:`Engine.reconcile`).
* A failed step or gate *before promotion* sends all traffic back to the baseline in one route (or
  stepwise with ``strategy.rollback: gradual``), stops any copies mirrored to the candidate,
  marks the candidate failed with its evidence, and leaves the baseline's resources and artifact
  alone. The failure path never changes the status of the release that is live.
* After promotion everything (retiring the baseline or idle releases, pruning artifacts) is cleanup:
  a failure there is journaled, emitted as :class:`~deployer.events.CleanupFailed` and reported as the
  outcome ``cleanup_failed`` (CLI exit 8); the promoted release stays live.
* Ctrl-C or an unexpected exception mid-rollout sends traffic back to the baseline (best effort,
  journaled ``interrupted``) and leaves the candidate ``deploying``, so ``deploy`` again resumes it;
  :class:`~deployer.events.Interrupted` says where traffic is.
* Transient provider errors are retried (:mod:`deployer.retry`); waits go through the one loop
  (:mod:`deployer.waiting`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from deployer import retry
from deployer.errors import CapabilityError, DeployerError, NoPreviousReleaseError, NotFoundError, ProviderError
from deployer.events import (
    CleanupFailed,
    Event,
    EventFn,
    Interrupted,
    PlanReady,
    Progress,
    Promoted,
    Retrying,
    RolledBack,
    StepDone,
    StepStarted,
    TrafficChanged,
    ignore,
)
from deployer.gatekeeper import bake
from deployer.planning import PRESENT, LedgerHead, Plan, Step, check_owned
from deployer.protocols import LedgerStore, Provider
from deployer.records import ArtifactRef, Observed, Operation, Release, Traffic
from deployer.rollout import rollback_steps
from deployer.secrets import redact_options, reveal
from deployer.spec import Autoscaling, Spec
from deployer.waiting import Clock, SystemClock, wait_for

T = TypeVar("T")


@dataclass
class Outcome:
    """What a verb did."""

    endpoint: str
    release: str | None
    outcome: str  # unchanged | deployed | resumed | rolled_back | scaled | destroyed | adopted | cleanup_failed
    url: str | None = None
    plan: Plan | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    cleanup_errors: list[str] = field(default_factory=list)
    """Cleanup steps that failed after the change succeeded (outcome ``cleanup_failed``)."""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "release": self.release,
            "outcome": self.outcome,
            "url": self.url,
            "plan": self.plan.to_dict() if self.plan else None,
            "evidence": self.evidence,
            "cleanup_errors": self.cleanup_errors,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class RollbackIntent:
    """A rollback's journaled target: ``to``, the release it replaced (``source``), and whether it completed."""

    to: str
    source: str | None
    done: bool


class Engine:
    """Runs plans for one provider against one ledger."""

    def __init__(
        self,
        provider: Provider,
        ledger: LedgerStore,
        *,
        on_event: EventFn | None = None,
        clock: Clock | None = None,
        timeout_s: float = 1800.0,
        notify_url: str | None = None,
    ) -> None:
        self.notify_url = notify_url
        self.provider = provider
        self.ledger = ledger
        self.on_event: EventFn = on_event or ignore
        self.clock = clock or SystemClock()
        self.timeout_s = timeout_s
        self._upload: Callable[[], ArtifactRef] | None = None

    # ---- helpers ---------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self.on_event(event)
        if self.notify_url and event.kind in ("rolled_back", "promoted"):
            from deployer.notify import notify

            sent = notify(self.notify_url, event)
            self.ledger.journal(
                event.endpoint,
                getattr(event, "release", None) or getattr(event, "to_release", None),
                "notify",
                "done" if sent else "failed",
                detail={"event": event.kind, "error": getattr(sent, "error", None)},
            )

    def call(self, fn: Callable[[], T], endpoint: str = "") -> T:
        """A provider call under the retry policy; each transient error retried is a Retrying event."""

        def retrying(error: BaseException, attempt: int, left_s: float) -> None:
            self.emit(Retrying(endpoint, operation="provider call", reason=str(error), attempt=attempt, left_s=left_s))

        return retry.call(fn, sleep=self.clock.sleep, on_retry=retrying)

    def retrying(self, op: Operation) -> Callable[[DeployerError, float], None]:
        """``wait_for``'s ``on_retry`` for ``op``: a Retrying event per transient poll error."""
        attempts = itertools.count(1)

        def report(error: DeployerError, left_s: float) -> None:
            self.emit(
                Retrying(
                    op.endpoint,
                    operation=op.kind,
                    release=op.release,
                    reason=str(error),
                    attempt=next(attempts),
                    left_s=left_s,
                )
            )

        return report

    def wait(self, op: Operation, what: str, timeout_s: float | None = None) -> None:
        """Wait for ``op``; raise ProviderError with the provider's message when it failed."""
        status = wait_for(
            op,
            self.provider.poll,
            timeout_s=timeout_s or self.timeout_s,
            clock=self.clock,
            on_retry=self.retrying(op),
        )
        if status.state == "failed":
            raise ProviderError(f"{what} failed: {status.message or 'no reason given'}")

    def head(self, endpoint: str) -> LedgerHead:
        rows = self.ledger.releases(endpoint)
        live = self.ledger.live_release(endpoint)
        flight = self.ledger.in_flight(endpoint)
        ops = self.ledger.operations(endpoint, limit=1)
        return LedgerHead(
            live=live.release if live else None,
            live_autoscaling=live.autoscaling if live else None,
            in_flight=flight.release if flight else None,
            next_id=self.ledger.next_release_id(endpoint),
            head_op=ops[-1].id if ops else 0,
            fingerprints={r.id: r.fingerprint for r in rows},
            statuses={r.id: r.status for r in rows},
        )

    def observe_owned(self, endpoint: str) -> Observed | None:
        """Observe ``endpoint`` and refuse (ConflictError) when it serves releases this ledger does not know."""
        observed = self.call(lambda: self.provider.observe(endpoint), endpoint)
        check_owned(endpoint, observed, self.head(endpoint), str(self.ledger.path))
        return observed

    def cleanup(self, endpoint: str, step: Step, fn: Callable[[], object], errors: list[str]) -> None:
        """Run ``fn`` (which journals ``step`` itself) after the change succeeded: a failure is journaled
        and reported in ``errors``, never undone."""
        try:
            fn()
        except DeployerError as e:
            errors.append(f"{step.describe()}: {e}")
            self.ledger.journal(
                endpoint, step.release, "cleanup", "failed", detail={"step": step.name, "error": str(e)}
            )
            self.emit(CleanupFailed(endpoint, step=step.name, release=step.release, error=str(e)))

    def step(self, endpoint: str, step: Step, fn: Callable[[], object]) -> None:
        """Journal ``step`` started, run it, journal done (or failed, then re-raise)."""
        self.ledger.journal(endpoint, step.release, step.name, "started")
        self.emit(StepStarted(endpoint, step=step.kind, release=step.release, detail=step.describe()))
        try:
            result = fn()
        except DeployerError as e:
            self.ledger.journal(endpoint, step.release, step.name, "failed", detail={"error": str(e)})
            self.emit(StepDone(endpoint, step=step.kind, release=step.release, outcome="failed", detail=str(e)))
            raise
        detail = result if isinstance(result, dict) else None
        self.ledger.journal(endpoint, step.release, step.name, "done", detail=detail)
        self.emit(StepDone(endpoint, step=step.kind, release=step.release, detail=step.describe()))

    def route(self, endpoint: str, traffic: Traffic) -> None:
        op = self.call(lambda: self.provider.route(endpoint, traffic), endpoint)
        self.wait(op, f"traffic change on {endpoint}")
        self.ledger.set_traffic(endpoint, traffic)
        self.emit(TrafficChanged(endpoint, weights=dict(traffic.weights)))

    def bring_up(self, release: Release, traffic: Traffic, timeout_s: float) -> None:
        """Start ``release`` holding ``traffic`` and wait until it is ready.

        The artifact is looked up in the store by digest (one metadata call), so a release recorded
        with an older URI (a moved home, another bucket) is served from where the bytes are now.
        """
        if release.artifact is not None:
            digest = release.artifact.digest
            found = self.call(lambda: self.provider.store().find(digest), release.endpoint)
            if found is None:
                raise NoPreviousReleaseError(
                    f"the artifact sha256:{digest[:12]} of {release.id} is not in the store",
                    hint="deploy the model again from its spec",
                )
            release = release.model_copy(update={"artifact": found})
        op = self.call(lambda: self.provider.deploy_release(release, traffic), release.endpoint)
        self.ledger.journal(
            release.endpoint, release.id, f"deploy_release:{release.id}", "sent", operation=op.model_dump()
        )
        self.wait(op, f"release {release.id}", timeout_s)
        self.ledger.set_release(release.endpoint, release.id, running=True)
        observed = self.call(lambda: self.provider.observe(release.endpoint), release.endpoint)
        if observed is not None:
            self.ledger.set_endpoint_facts(release.endpoint, url=observed.url, meta=observed.meta)

    def retire_failed(self, spec: Spec) -> bool:
        """``strategy.retire_failed``, or the provider's default when unset (clouds retire; local keeps)."""
        if spec.strategy.retire_failed is not None:
            return spec.strategy.retire_failed
        return bool(getattr(self.provider, "retire_failed_default", True))

    def retire(self, endpoint: str, release_id: str) -> None:
        op = self.call(lambda: self.provider.retire_release(endpoint, release_id), endpoint)
        self.wait(op, f"retiring {release_id}")
        self.ledger.set_release(endpoint, release_id, running=False)

    # ---- deploy ----------------------------------------------------------------------------

    def deploy(self, spec: Spec, candidate: Release, upload: Callable[[], ArtifactRef] | None) -> Outcome:
        """Converge ``spec.name`` to serve ``candidate``. The caller holds the endpoint lock.

        ``upload`` pushes the packaged artifact and returns its stored ref; it is only called when
        the plan has an upload step.
        """
        from deployer.planning import make_plan

        endpoint = spec.name
        self.notify_url = self.notify_url or reveal(spec.notify_webhook)
        observed = self.observe_owned(endpoint)
        self.reconcile(endpoint, observed)
        head = self.head(endpoint)
        plan = make_plan(spec, candidate, observed, head, artifact_present=upload is None)
        self.emit(PlanReady(endpoint, steps=[s.describe() for s in plan.steps], diff=plan.diff))
        if plan.noop:
            url = observed.url if observed else None
            return Outcome(endpoint, plan.release.id if plan.release else None, "unchanged", url, plan)
        self.ledger.upsert_endpoint(endpoint, self.provider.name, target_record(spec, self.provider))
        release = plan.release
        assert release is not None
        resumed = head.in_flight is not None and head.in_flight.id == release.id
        self._upload = upload
        if self.ledger.release(endpoint, release.id) is None:
            self.ledger.add_release(release, spec_hash=spec.spec_hash())
        else:
            self.ledger.update_release_record(release)
        errors: list[str] = []
        done = False  # the change succeeded (promoted, or the live release was kept): the rest is cleanup
        try:
            for step in plan.steps:
                if done or step.kind == "retire_release":
                    self.cleanup(endpoint, step, partial(self._run, spec, plan, step, release), errors)
                    continue
                release = self._run(spec, plan, step, release)
                done = step.kind == "promote"
            if done:
                self.prune(endpoint, spec.strategy.keep_releases, errors)
        except DeployerError as e:
            return self._fail(spec, plan, release, e)
        except (KeyboardInterrupt, Exception) as e:  # noqa: BLE001 - not DeployerError: an interruption or a bug
            if not done:
                self._interrupted(spec, plan, release, e)
            raise
        obs = self.call(lambda: self.provider.observe(endpoint), endpoint)
        url = obs.url if obs else None
        outcome = "cleanup_failed" if errors else "resumed" if resumed else "deployed"
        return Outcome(endpoint, release.id, outcome, url, plan, cleanup_errors=errors)

    def reconcile(self, endpoint: str, observed: Observed | None) -> None:
        """Releases the ledger records as running that the provider no longer has (the endpoint was recreated
        or cleaned up out of band) are marked not running, journaled as ``reconcile`` with their ids."""
        present = set(observed.releases) if observed else set()
        gone = [r.id for r in self.ledger.releases(endpoint) if r.running and r.id not in present]
        if gone:
            with self.ledger.transaction():
                for rid in gone:
                    self.ledger.set_release(endpoint, rid, running=False)
                self.ledger.journal(endpoint, None, "reconcile", "done", detail={"gone": gone})

    def _run(self, spec: Spec, plan: Plan, step: Step, release: Release) -> Release:
        endpoint = spec.name
        kind = step.kind
        if kind == "upload":
            assert step.release is not None

            def do_upload() -> dict[str, Any]:
                nonlocal release
                if self._upload is None:
                    return {"skipped": True}
                release = release.model_copy(update={"artifact": self._upload()})
                self.ledger.update_release_record(release)
                return {"uri": release.artifact.uri if release.artifact else None}

            self.step(endpoint, step, do_upload)
        elif kind in ("deploy_release", "repair"):
            target = release if kind == "deploy_release" else self._ledger_release(endpoint, step.release)
            current = self._observed_traffic(endpoint)
            hold = current if current.weights else Traffic.all_to(target.id)
            ready_s = min(spec.strategy.ready_timeout_s, self.timeout_s)
            self.step(endpoint, step, lambda: self.bring_up(target, hold, ready_s))
        elif kind == "native_rollout":
            self.step(endpoint, step, lambda: self._native(spec, release, plan.baseline))
        elif kind == "route":
            self.step(endpoint, step, lambda: self.route(endpoint, step.traffic))
        elif kind == "bake":
            self.step(endpoint, step, lambda: self._bake(spec, plan, step))
        elif kind == "scale":
            assert spec.autoscaling is not None and step.release is not None
            rid = step.release
            auto = spec.autoscaling

            self.step(endpoint, step, partial(self.apply_scale, endpoint, rid, auto))
        elif kind == "promote":
            self.step(endpoint, step, lambda: self._promote(endpoint, release, plan.baseline))
        elif kind == "retire_release":
            assert step.release is not None
            rid = step.release
            self.step(endpoint, step, lambda: self.retire(endpoint, rid))
        elif kind == "abandon":
            assert step.release is not None
            self.step(endpoint, step, lambda: self._abandon(endpoint, step.release or ""))
        return release

    def _ledger_release(self, endpoint: str, rid: str | None) -> Release:
        row = self.ledger.release(endpoint, rid or "")
        if row is None:
            raise DeployerError(f"release {rid} is not in the ledger")
        return row.release

    def _observed_traffic(self, endpoint: str) -> Traffic:
        obs = self.call(lambda: self.provider.observe(endpoint), endpoint)
        return obs.traffic if obs else Traffic()

    def _promote(self, endpoint: str, release: Release, baseline: str | None) -> dict[str, Any]:
        with self.ledger.transaction():
            for row in self.ledger.releases(endpoint):
                if row.status == "live" and row.id != release.id:
                    self.ledger.set_release(endpoint, row.id, status="superseded")
            self.ledger.set_release(endpoint, release.id, status="live", outcome="succeeded", finished=True)
        self.emit(Promoted(endpoint, release=release.id))
        return {"baseline": baseline}

    def _native(self, spec: Spec, release: Release, baseline: str | None) -> dict[str, Any]:
        """Let the platform run the guarded rollout; a platform rollback is a failure, never a success."""
        rollout = getattr(self.provider, "rollout_native", None)
        if rollout is None or not self.provider.capabilities.native_rollout:
            raise CapabilityError(f"strategy.native: {self.provider.capabilities.reason('native_rollout')}")
        op = self.call(lambda: rollout(release, baseline, spec), release.endpoint)
        self.ledger.journal(
            release.endpoint, release.id, f"native_rollout:{release.id}", "sent", operation=op.model_dump()
        )
        status = wait_for(
            op,
            self.provider.poll,
            timeout_s=min(spec.strategy.ready_timeout_s, self.timeout_s),
            clock=self.clock,
            on_retry=self.retrying(op),
        )
        if status.state == "failed":
            raise ProviderError(
                f"the platform rolled back {release.id}: {status.message or 'no reason given'}", code="NativeRollback"
            )
        self.ledger.set_release(release.endpoint, release.id, running=True)
        if baseline is not None:
            self.ledger.set_release(release.endpoint, baseline, running=False)
        traffic = Traffic.all_to(release.id)
        self.ledger.set_traffic(release.endpoint, traffic)
        self.emit(TrafficChanged(release.endpoint, weights=dict(traffic.weights)))
        return {"operation": op.ref}

    def apply_scale(self, endpoint: str, rid: str, auto: Autoscaling) -> dict[str, Any]:
        """Scale ``rid`` and record the applied autoscaling on its ledger row."""
        op = self.call(lambda: self.provider.scale(endpoint, rid, auto), endpoint)
        self.wait(op, f"scaling {rid}")
        self.ledger.set_release(endpoint, rid, autoscaling=auto)
        return {"autoscaling": auto.model_dump(mode="json")}

    def prune(self, endpoint: str, keep: int, errors: list[str]) -> None:
        """Delete artifacts no rollback target needs (beyond the newest ``keep`` releases). Cleanup:
        a failure is reported in ``errors`` and retried after the next promotion."""
        done: set[str] = set()
        for rid, digest in self.ledger.prunable_artifacts(endpoint, keep):
            if digest in done:
                continue

            def delete(digest: str = digest) -> None:
                self.call(partial(self.provider.store().delete, digest), endpoint)
                self.ledger.mark_pruned(endpoint, digest)

            step = Step("prune", rid, note=f"artifact sha256:{digest[:12]}")
            self.cleanup(endpoint, step, partial(self.step, endpoint, step, delete), errors)
            done.add(digest)

    def _abandon(self, endpoint: str, rid: str) -> dict[str, Any]:
        live = self.ledger.live_release(endpoint)
        traffic = self._observed_traffic(endpoint)
        if live is not None and (traffic.weights.get(rid, 0) > 0 or rid in traffic.mirror):
            self.route(endpoint, Traffic.all_to(live.id))
        self.retire(endpoint, rid)
        self.ledger.set_release(
            endpoint,
            rid,
            status="abandoned",
            outcome="abandoned",
            reason="interrupted rollout replaced by a different spec",
            finished=True,
        )
        return {"returned_to": live.id if live else None}

    def _bake(self, spec: Spec, plan: Plan, step: Step) -> dict[str, Any]:
        assert plan.release is not None
        rid = plan.release.id
        row = self.ledger.endpoint(spec.name)  # the shares the last route set: what this bake holds
        traffic = row.traffic if row else Traffic()
        weight, mirror = traffic.weights.get(rid, 0), traffic.mirror.get(rid)
        evidence = bake(self, spec.name, spec.gates, rid, plan.baseline, step.bake_s, weight=weight, mirror=mirror)
        return {"evidence": evidence[-len(spec.gates) :] if spec.gates else []}

    def _fail(self, spec: Spec, plan: Plan, release: Release, error: DeployerError) -> Outcome:
        """Send traffic back to the baseline, mark the candidate failed, re-raise.

        When the plan's release is the live one (a repair or scale of an unchanged spec failed) nothing
        is rolled back and its status stays: the failure is journaled and raised.
        """
        endpoint = spec.name
        evidence = getattr(error, "evidence", [])
        baseline = plan.baseline
        live = self.ledger.live_release(endpoint)
        if live is not None and live.id == release.id:
            self.ledger.journal(endpoint, release.id, "apply", "failed", detail={"error": str(error)})
            raise error
        try:
            traffic = self._observed_traffic(endpoint)
            current = traffic.weights.get(release.id, 0)
            if release.id in traffic.mirror:  # a shadow phase: stop the copies; live traffic never moved
                self.route(endpoint, Traffic(weights=traffic.weights, mirror=_without(traffic.mirror, release.id)))
            if baseline is not None and current > 0:
                for w in rollback_steps(spec.strategy, current):
                    self.route(endpoint, Traffic.split(release.id, w, baseline) if w else Traffic.all_to(baseline))
                self.emit(RolledBack(endpoint, from_release=release.id, to_release=baseline, reason=str(error)))
            with self.ledger.transaction():
                self.ledger.set_release(
                    endpoint,
                    release.id,
                    status="failed",
                    outcome="failed",
                    reason=str(error),
                    evidence=evidence,
                    finished=True,
                )
                self.ledger.journal(
                    endpoint, release.id, "rollback", "done", detail={"to": baseline, "reason": str(error)}
                )
        except DeployerError as cleanup:
            self.ledger.journal(endpoint, release.id, "rollback", "failed", detail={"error": str(cleanup)})
            raise cleanup from error
        if self.retire_failed(spec) and baseline is not None:
            step = Step("retire_release", release.id, note="failed candidate")
            self.cleanup(
                endpoint, step, partial(self.step, endpoint, step, partial(self.retire, endpoint, release.id)), []
            )
        raise error

    def _interrupted(self, spec: Spec, plan: Plan, release: Release, cause: BaseException) -> None:
        """Ctrl-C or an unexpected error before promotion: send traffic back to the baseline (best effort).

        The candidate stays ``deploying`` (``deploy`` again resumes it); the journal's ``interrupted`` row
        and the :class:`Interrupted` event say where traffic is when it could not be moved.
        """
        endpoint = spec.name
        baseline = plan.baseline
        weights: dict[str, int] = {}
        returned = False
        problem = None
        try:
            weights = dict(self._observed_traffic(endpoint).weights)
            if baseline is not None and weights.get(release.id, 0) > 0:
                self.route(endpoint, Traffic.all_to(baseline))
                weights = {baseline: 100}
            returned = baseline is None or weights == {baseline: 100}
        except (KeyboardInterrupt, Exception) as e:  # noqa: BLE001 - best effort: report what is left
            problem = f"{type(e).__name__}: {e}"
        reason = f"{type(cause).__name__}: {cause}".rstrip(": ")
        self.ledger.journal(
            endpoint,
            release.id,
            "interrupted",
            "done" if returned else "failed",
            detail={"reason": reason, "baseline": baseline, "weights": weights, "error": problem},
        )
        self.emit(
            Interrupted(
                endpoint,
                release=release.id,
                baseline=baseline,
                weights=weights,
                returned=returned,
                reason=reason,
                ledger=str(self.ledger.path),
            )
        )

    # ---- other verbs -----------------------------------------------------------------------

    def rollback(
        self, endpoint: str, to: str | None = None, reason: str = "manual rollback", retire_current: bool = False
    ) -> Outcome:
        """Make ``to`` (default: the newest superseded release) live. The caller holds the lock.

        One route when the target still runs; otherwise redeploy it from its stored artifact first.
        Rolling back to the live release itself puts all traffic back on it (it undoes an interrupted split).

        Idempotent: the target is journaled (``rollback_target``) before anything changes. Without ``to``, a
        re-run after a completed rollback changes nothing and says so (outcome ``unchanged`` with a note); a
        re-run after an interrupted one resumes the same target.
        """
        observed = self.observe_owned(endpoint)
        live = self.ledger.live_release(endpoint)
        intent = None if to else self.rollback_intent(endpoint)
        if intent is not None and intent.done and live is not None and live.id == intent.to and intent.source:
            return Outcome(
                endpoint,
                live.id,
                "unchanged",
                notes=[
                    f"already rolled back from {intent.source} to {live.id}; nothing was changed "
                    f"(name an older release with --to to go further back)"
                ],
            )
        if intent is not None and not intent.done:
            to = intent.to  # an interrupted rollback resumes the same target
        target = (
            self.ledger.release(endpoint, to)
            if to
            else self.ledger.rollback_target(endpoint, exclude=live.id if live else None)
        )
        if target is None:
            raise NoPreviousReleaseError(
                f"release {to!r} of {endpoint!r} is not in the ledger", hint="see `deployer history`"
            )
        if target.status not in ("superseded", "rolled_back", "live"):
            raise NoPreviousReleaseError(
                f"release {target.id} of {endpoint!r} is {target.status}: only a release that was live can serve again",
                hint="see `deployer history` for releases that were live",
            )
        running = (
            observed is not None and target.id in observed.releases and observed.releases[target.id].status in PRESENT
        )
        if live is not None and target.id == live.id:
            if running and observed is not None and observed.traffic == Traffic.all_to(live.id):
                return Outcome(endpoint, target.id, "unchanged")
            live = None  # it stays live: only its traffic (or its compute) comes back
        intent_detail = {"from": live.id if live else None, "reason": reason}
        self.ledger.journal(endpoint, target.id, "rollback_target", "started", detail=intent_detail)
        if not running and target.release.artifact is None and target.release.flavor != "container":
            raise NoPreviousReleaseError(
                f"release {target.id} of {endpoint!r} no longer runs and the ledger has no artifact for it "
                "(it was adopted)",
                hint="deploy its model again from a spec",
            )
        if not running:
            hold = observed.traffic if observed and observed.traffic.weights else Traffic.all_to(target.id)
            if live is None and hold == Traffic.all_to(target.id):
                # an empty endpoint serves the target from its first instance: the ledger says so first
                self.ledger.set_release(endpoint, target.id, status="live", reason=f"rolled back to: {reason}")
            self.step(
                endpoint,
                Step("deploy_release", target.id, note="redeploy for rollback"),
                lambda: self.bring_up(target.release, hold, self.timeout_s),
            )
        try:
            self.step(
                endpoint,
                Step("route", target.id, weights={target.id: 100}),
                lambda: self.route(endpoint, Traffic.all_to(target.id)),
            )
        except DeployerError:
            # the answer may be lost after the change was made: the ledger follows what the provider serves
            now = self.call(lambda: self.provider.observe(endpoint), endpoint)
            if now is None or now.traffic != Traffic.all_to(target.id):
                raise
            self.ledger.set_traffic(endpoint, now.traffic)
        with self.ledger.transaction():
            if live is not None:
                self.ledger.set_release(endpoint, live.id, status="rolled_back", reason=reason)
            self.ledger.set_release(endpoint, target.id, status="live", reason=f"rolled back to: {reason}")
            self.ledger.journal(
                endpoint, target.id, "rollback", "done", detail={"from": live.id if live else None, "reason": reason}
            )
        self.emit(RolledBack(endpoint, from_release=live.id if live else None, to_release=target.id, reason=reason))
        errors: list[str] = []
        if live is not None and retire_current:
            step = Step("retire_release", live.id)
            self.cleanup(
                endpoint, step, partial(self.step, endpoint, step, partial(self.retire, endpoint, live.id)), errors
            )
        obs = self.call(lambda: self.provider.observe(endpoint), endpoint)
        return Outcome(
            endpoint,
            target.id,
            "cleanup_failed" if errors else "rolled_back",
            obs.url if obs else None,
            cleanup_errors=errors,
        )

    def rollback_intent(self, endpoint: str) -> RollbackIntent | None:
        """The newest journaled rollback target (``rollback_target`` row) and whether that rollback completed;
        None when there is none, or a promotion came after it (a deploy since makes it history)."""
        ops = self.ledger.operations(endpoint, limit=5000)
        for i in range(len(ops) - 1, -1, -1):
            op = ops[i]
            if op.step.startswith("promote:") and op.phase == "done":
                return None
            if op.step == "rollback_target" and op.phase == "started" and op.release:
                done = any(o.step == "rollback" and o.phase == "done" and o.release == op.release for o in ops[i + 1 :])
                return RollbackIntent(op.release, (op.detail or {}).get("from"), done)
        return None

    def scale(self, endpoint: str, autoscaling: Autoscaling) -> Outcome:
        self.observe_owned(endpoint)
        live = self.ledger.live_release(endpoint)
        if live is None:
            raise NotFoundError(f"endpoint {endpoint!r} has no live release to scale", hint="deploy it first")
        step = Step("scale", live.id, note=f"min {autoscaling.min}, max {autoscaling.max}")
        self.step(endpoint, step, partial(self.apply_scale, endpoint, live.id, autoscaling))
        return Outcome(endpoint, live.id, "scaled")

    def destroy(self, endpoint: str) -> Outcome:
        self.observe_owned(endpoint)

        def do() -> None:
            op = self.call(lambda: self.provider.destroy(endpoint), endpoint)
            self.wait(op, f"destroying {endpoint}")
            for row in self.ledger.releases(endpoint):
                if row.status == "live":
                    self.ledger.set_release(endpoint, row.id, status="superseded", reason="endpoint destroyed")
                if row.status == "deploying":
                    self.ledger.set_release(
                        endpoint, row.id, status="abandoned", reason="endpoint destroyed", finished=True
                    )
            self.ledger.mark_destroyed(endpoint)
            self.evict_unnamed(endpoint)

        self.step(endpoint, Step("destroy"), lambda: do())
        return Outcome(endpoint, None, "destroyed")

    def evict_unnamed(self, endpoint: str) -> None:
        """After ``destroy``: drop the local store entries (and unpacked trees) of ``endpoint``'s artifacts
        that no live row of the ledger names. Only stores that offer ``evict`` (the local one): cloud
        artifacts stay until pruned."""
        evict = getattr(self.provider.store(), "evict", None)
        if evict is None:
            return
        unnamed = self.ledger.unnamed_digests(endpoint)
        evict(unnamed)
        for digest in unnamed:
            self.ledger.mark_pruned(endpoint, digest)

    def progress(self, endpoint: str, task: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            self.emit(Progress(endpoint, task=task, done=done, total=total))

        return report


def _without(shares: dict[str, int], release_id: str) -> dict[str, int]:
    return {k: v for k, v in shares.items() if k != release_id}


def target_record(spec: Spec, provider: Provider | None = None) -> dict[str, Any]:
    """The ledger's record of where the endpoint lives: its target and its provider options, with
    the values of the ``provider.Options`` secret fields redacted (:mod:`deployer.secrets`)."""
    options = redact_options(spec.provider_options, getattr(provider, "Options", None))
    return {**spec.target.model_dump(mode="json"), "options": options}
