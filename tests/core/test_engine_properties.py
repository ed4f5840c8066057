"""Property-based proof of the engine's release safety (hypothesis stateful testing).

Random sequences of deploy / rollback / scale / guard / destroy (and platform maintenance) run against
the in-memory platform, each command with a random fault: a typed error, Ctrl-C, or the process
killed (:class:`~deployer.testing.harness.Crash`), before or after a random provider or store call
takes effect. After a faulted command the same command is run again without faults (it must converge),
and after every step the invariants hold:

* the ledger names at most one live release; whenever the endpoint serves, the live release has all
  the traffic, or the split in progress is with a release the ledger journals as ``deploying``;
* every release the platform runs is one the ledger knows, with the same fingerprint;
* the rollback target the ledger names still has its artifact (or still runs), and so does every
  live or superseded release whose artifact the ledger has not pruned;
* re-running a deploy that converged changes nothing.

200 sequences run in CI; ``DEPLOYER_HYPOTHESIS_EXAMPLES=10000`` runs ten thousand locally.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from memory_rig import NAME, Rig

from deployer.errors import (
    AuthError,
    ConflictError,
    DeployerError,
    GateFailedError,
    NoPreviousReleaseError,
    NotFoundError,
    TransientError,
)
from deployer.ledger import Ledger
from deployer.spec import Autoscaling
from deployer.testing.harness import Crash
from deployer.testing.memory import WRITE_CALLS, FaultPlan

STATS: Counter[str] = Counter()
EXAMPLES = int(os.environ.get("DEPLOYER_HYPOTHESIS_EXAMPLES", "200"))

FAULTS: dict[str, Callable[[str], BaseException]] = {
    "throttled": lambda call: TransientError(f"throttled in {call}", code="Throttling"),
    "denied": lambda call: AuthError(f"denied in {call}", code="AccessDenied"),
    "busy": lambda call: ConflictError(f"busy in {call}", code="ResourceInUse"),
    "killed": lambda call: Crash(f"killed in {call}"),
    "ctrl-c": lambda call: KeyboardInterrupt(),
}
CALLS = [WRITE_CALLS, WRITE_CALLS, WRITE_CALLS, None, "observe", "poll", "route", "scale", "retire_release"]
"""Where a fault strikes: the n-th call of that name (or of those names; None: of any name). Mostly writes."""
faults = st.tuples(
    st.sampled_from(CALLS), st.integers(1, 3), st.sampled_from(["before", "after"]), st.sampled_from(sorted(FAULTS))
)
EXPECTED = (GateFailedError, NoPreviousReleaseError, NotFoundError)
"""What a fault-free command may still answer: a failing gate, nothing to roll back to, nothing to scale."""


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        shm = Path("/dev/shm")  # the ledger is SQLite: on tmpfs its syncs cost nothing
        self.tmp = Path(tempfile.mkdtemp(prefix="deployer-props-", dir=shm if shm.is_dir() else None))
        self.rig = Rig(self.tmp)
        self.rig.world.pending_polls = 2
        self.healthy_gates = True

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- running a command ---------------------------------------------------------------------

    def run(self, command: Callable[[], Any], fault: Any, *, rollout: bool = False) -> None:
        """Run ``command`` with ``fault``; after a fault, run it again without one: it must converge.

        A typed error (and Ctrl-C during a rollout) is the engine's to handle: the strict invariants hold
        right after it. After a kill (or Ctrl-C outside a rollout) only the weak ones do until the re-run.
        """
        plan = FaultPlan(at={fault[1]: (fault[2], FAULTS[fault[3]])}, call=fault[0]) if fault else None
        self.rig.world.faults = plan
        killed = False
        try:
            command()
        except (DeployerError, Crash, KeyboardInterrupt) as e:
            if plan is None or not plan.fired:
                assert isinstance(e, EXPECTED), f"{type(e).__name__}: {e}"
            killed = isinstance(e, Crash) or (isinstance(e, KeyboardInterrupt) and not rollout)
        finally:
            self.rig.world.faults = None
        if not killed:
            self.check(strict=True)
        elif rollout:  # killed mid-rollout: a split is allowed while the candidate is journaled in flight
            self.check(strict=False)
        else:  # killed mid-rollback, -scale or -destroy: the journal holds the step; the re-run finishes it
            self.rig.live()
            self.owned()
        if plan is not None and plan.fired:
            with contextlib.suppress(*EXPECTED):
                command()

    # ---- rules ---------------------------------------------------------------------------------

    @rule(
        version=st.integers(1, 2),
        canary=st.booleans(),
        keep=st.integers(1, 3),
        warm=st.booleans(),
        retire=st.sampled_from([None, True, False]),
        auto=st.none() | st.integers(1, 2),
        fault=faults,
    )
    def deploy(
        self, version: int, canary: bool, keep: int, warm: bool, retire: bool | None, auto: int | None, fault: Any
    ) -> None:
        strategy: dict[str, Any] = {"keep_releases": keep, "keep_previous_warm": warm, "retire_failed": retire}
        if canary:
            strategy.update(type="canary", steps=[{"weight": 20, "bake_s": 30}, {"weight": 100, "bake_s": 0}])
        gate = "always_pass" if self.healthy_gates else "always_fail"
        spec = self.rig.spec(
            version,
            strategy=strategy,
            gates=[{"type": "callable", "function": f"deployer.testing.gatefns:{gate}"}],
            autoscaling={"min": auto, "max": 3} if auto else None,
        )
        self.run(lambda: self.rig.harness.deploy(spec), fault, rollout=True)
        converged = self.rig.live() is not None and self.rig.rows()[self.rig.live() or ""].fingerprint == self.fp(spec)
        if converged and self.serves_only_live():
            out = self.rig.harness.deploy(spec)  # re-running a converged deploy changes nothing
            assert out.outcome == "unchanged", out.plan.to_dict() if out.plan else out
            assert self.rig.harness.recorder is not None and self.rig.harness.recorder.writes == 0

    @rule(fault=faults)
    def rollback(self, fault: Any) -> None:
        self.run(lambda: self.rig.harness.rollback(self.rig.spec(1)), fault)

    @rule(low=st.integers(1, 3), fault=faults)
    def scale(self, low: int, fault: Any) -> None:
        self.run(lambda: self.rig.harness.scale(self.rig.spec(1), Autoscaling(min=low, max=3)), fault)

    @rule(healthy=st.booleans(), fault=faults)
    def guard(self, healthy: bool, fault: Any) -> None:
        """What ``deployer guard`` does with its verdict: journal it; on a failure roll back to the target."""

        def judge() -> None:
            ledger = Ledger(self.rig.root / "ledger.db")
            try:
                live = ledger.live_release(NAME)
                if live is None:
                    return
                ledger.journal(NAME, live.id, "guard:error_rate", "pass" if healthy else "fail")
                if healthy:
                    return
                target = ledger.rollback_target(NAME, exclude=live.id)
            except NoPreviousReleaseError:
                return
            finally:
                ledger.close()
            self.rig.harness.rollback(self.rig.spec(1), to=target.id)

        self.run(judge, fault)

    @rule(fault=faults)
    def destroy(self, fault: Any) -> None:
        self.run(lambda: self.rig.harness.destroy(self.rig.spec(1)), fault)

    @rule(observes=st.integers(1, 6))
    def maintenance(self, observes: int) -> None:
        live = self.rig.live()
        if live is not None:
            self.rig.world.maintenance(NAME, live, observes)

    @rule()
    def gates_turn(self) -> None:
        self.healthy_gates = not self.healthy_gates

    # ---- invariants ----------------------------------------------------------------------------

    def fp(self, spec: Any) -> str:
        from deployer import api
        from deployer.testing.memory import MemoryProvider

        return api.prepare(spec, provider=MemoryProvider(self.rig.world)).candidate.fingerprint

    def serves_only_live(self) -> bool:
        ep = self.rig.world.endpoints.get(NAME)
        return ep is not None and ep.traffic.weights == {self.rig.live(): 100}

    def owned(self) -> None:
        rows = self.rig.rows()
        ep = self.rig.world.endpoints.get(NAME)
        for rid, rel in (ep.releases if ep else {}).items():
            assert rid in rows, f"the platform runs {rid}, which the ledger does not know"
            assert rows[rid].fingerprint == rel.fingerprint, f"{rid} runs another fingerprint than the ledger's"

    @invariant()
    def the_ledger_names_what_is_served(self) -> None:
        self.check(strict=True)

    def check(self, *, strict: bool) -> None:
        """The live release serves all traffic (right after a kill: or a split with a journaled in-flight
        release); nothing runs that the ledger cannot name; rollback targets keep their artifacts."""
        path = self.rig.root / "ledger.db"
        if not path.exists():
            return
        ledger = Ledger(path)
        try:
            rows = {r.id: r for r in ledger.releases(NAME)}
            pruned = {r[0] for r in ledger.db.execute("SELECT id FROM releases WHERE artifact_pruned=1")}
            lives = [r.id for r in rows.values() if r.status == "live"]
            ever_live = {  # promoted, or made live by a rollback
                op.release
                for op in ledger.operations(NAME, limit=100_000)
                if op.phase == "done"
                and (op.step.startswith("promote:") or (op.step == "rollback" and "from" in (op.detail or {})))
            }
            try:
                target: Any = ledger.rollback_target(NAME, exclude=lives[0] if lives else None)
            except NoPreviousReleaseError:
                target = None
        finally:
            ledger.close()
        assert len(lives) <= 1, f"the ledger names {lives} live"
        live = lives[0] if lives else None
        ep = self.rig.world.endpoints.get(NAME)
        serving = dict(ep.traffic.weights) if ep else {}
        running = set(ep.releases) if ep else set()
        in_flight = {r.id for r in rows.values() if r.status == "deploying"}
        if serving and live is not None and serving != {live: 100}:
            assert not strict, f"traffic {serving} with {live} live"
            assert in_flight and set(serving) <= {live} | in_flight, (
                f"traffic {serving} with {live} live and nothing journaled in flight"
            )
        if serving and live is None:  # only a first rollout that never became live serves without one
            assert not set(serving) & ever_live, f"{serving} serves, was live, and the ledger names no live release"
            assert all(rows[r].status in ("deploying", "failed") for r in serving), (serving, rows)
        for rid in running:
            assert rid in rows, f"the platform runs {rid}, which the ledger does not know"
            assert rows[rid].fingerprint == ep.releases[rid].fingerprint if ep else True
        for row in rows.values():
            if row.status in ("live", "superseded") and row.id not in pruned and row.artifact_digest:
                assert row.artifact_digest in self.rig.world.blobs or row.id in running, f"{row.id} lost its artifact"
        if target is not None:
            assert target.artifact_digest in self.rig.world.blobs or target.id in running


EngineMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineProperties = pytest.mark.timeout(max(600, EXAMPLES))(EngineMachine.TestCase)

