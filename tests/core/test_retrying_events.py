"""Transient errors during a wait or a retried provider call are events, not silence.

A user watching a deploy sees why nothing moves: each TransientError the engine absorbs becomes a
``retrying`` event naming the operation, the reason and the time left before the deadline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from memory_rig import Rig

from deployer.errors import TransientError
from deployer.events import Event, Retrying
from deployer.testing.memory import FaultPlan

pytestmark = pytest.mark.timeout(30)


def _throttled(call: str) -> BaseException:
    return TransientError(f"{call}: Throttling: rate exceeded", code="Throttling")


def test_a_transient_poll_error_during_a_wait_is_a_retrying_event(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.world.faults = FaultPlan(at={2: ("before", _throttled), 3: ("before", _throttled)}, call="poll")
    events: list[Event] = []

    outcome = rig.harness.deploy(rig.spec(1), on_event=events.append, timeout_s=600)

    assert outcome.release == "r0001"
    retrying = [e for e in events if isinstance(e, Retrying)]
    assert len(retrying) == 2, [e.to_dict() for e in events]
    first = retrying[0]
    assert first.operation == "deploy_release" and first.release == "r0001"
    assert "Throttling: rate exceeded" in first.reason
    assert 0 < first.left_s <= 600
    assert first.to_dict()["kind"] == "retrying"


def test_a_transient_error_of_a_provider_call_is_a_retrying_event(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.world.faults = FaultPlan(at={1: ("before", _throttled)}, call="deploy_release")
    events: list[Event] = []

    rig.harness.deploy(rig.spec(1), on_event=events.append)

    retrying = [e for e in events if isinstance(e, Retrying)]
    assert [e.attempt for e in retrying] == [1], [e.to_dict() for e in events]
    assert "deploy_release" in retrying[0].reason and retrying[0].left_s > 0
