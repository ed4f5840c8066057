"""Shadow traffic on azure at the provider level: the mirrored candidate receives copies, its errors never
reach callers, and its own metrics (from Azure Monitor, after the publication delay) fail a gate."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from armfake import ArmFake
from helpers import make_provider, make_release, settle

from deployer.gates import GateContext, evaluate
from deployer.records import Traffic
from deployer.spec import MetricGate

pytestmark = pytest.mark.timeout(120)
EP = "shadow-az"
ROW = [[0.3, -0.2, 0.5, 0.1]]


def test_mirrored_candidate_gets_copies_its_errors_stay_hidden_and_fail_a_gate(arm: ArmFake, tmp_path: Path) -> None:
    arm.metrics.delay_s = 0.3
    p = make_provider(tmp_path / "home")
    r1 = make_release(p, tmp_path, EP, "r0001")
    assert settle(p, p.deploy_release(r1, Traffic.all_to("r0001"))) == "succeeded"
    assert settle(p, p.route(EP, Traffic.all_to("r0001"))) == "succeeded"
    # the candidate was trained on 3 features: every 4-feature request fails inside its scoring script
    r2 = make_release(p, tmp_path, EP, "r0002", seed=2, n_features=3)
    assert settle(p, p.deploy_release(r2, Traffic(weights={"r0001": 100}))) == "succeeded"

    mirrored = Traffic(weights={"r0001": 100}, mirror={"r0002": 50})
    assert settle(p, p.route(EP, mirrored)) == "succeeded"
    obs = p.observe(EP)
    assert obs is not None and obs.traffic == mirrored

    answers = [p.invoke(EP, ROW) for _ in range(20)]
    assert all(a.status == 200 and a.release == "r0001" for a in answers)
    assert all(a.body["predictions"] in ([0], [1]) for a in answers)

    time.sleep(0.4)
    live, shadow = p.metrics(EP, "r0001", 60), p.metrics(EP, "r0002", 60)
    assert live.requests == 20 and live.errors == 0
    assert shadow.requests == 10 and shadow.errors == 10  # 50% copied, all failed

    gate = MetricGate(metric="error_rate", max=0.05, min_samples=5)
    assert evaluate(gate, GateContext(endpoint=EP, release="r0002", provider=p, window_s=60)).outcome == "fail"
    assert evaluate(gate, GateContext(endpoint=EP, release="r0001", provider=p, window_s=60)).outcome == "pass"

    # a smoke request aimed at the candidate gets its failure, sent once (a model's 5xx is never retried)
    served = len(arm.metrics.served)
    direct = p.invoke(EP, ROW, release="r0002")
    assert direct.status == 500 and direct.release == "r0002" and len(arm.metrics.served) == served + 1

    # ending the shadow phase: the mirror goes, then the candidate can be retired
    assert settle(p, p.route(EP, Traffic.all_to("r0001"))) == "succeeded"
    assert settle(p, p.retire_release(EP, "r0002")) == "succeeded"
    obs = p.observe(EP)
    assert obs is not None and set(obs.releases) == {"r0001"} and obs.traffic.mirror == {}


def test_a_mirrored_release_cannot_be_retired_until_the_mirror_is_removed(arm: ArmFake, tmp_path: Path) -> None:
    from deployer.errors import ConflictError

    p = make_provider(tmp_path / "home")
    r1 = make_release(p, tmp_path, EP, "r0001")
    settle(p, p.deploy_release(r1, Traffic.all_to("r0001")))
    settle(p, p.route(EP, Traffic.all_to("r0001")))
    r2 = make_release(p, tmp_path, EP, "r0002", seed=2)
    settle(p, p.deploy_release(r2, Traffic(weights={"r0001": 100})))
    settle(p, p.route(EP, Traffic(weights={"r0001": 100}, mirror={"r0002": 10})))
    with pytest.raises(ConflictError, match="traffic"):
        p.retire_release(EP, "r0002")
