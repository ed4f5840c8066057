"""The azure provider against the ARM fake and Azurite: resources say what they serve, continuation tokens
resume the same operation, the fake refuses what Azure refuses, throttling is retried, metrics are per release."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from armfake import ArmFake
from azure.ai.ml._restclient.arm_ml_service import models as rest
from azure.core.exceptions import HttpResponseError
from helpers import make_provider, make_release, settle

from deployer.errors import CapabilityError, ConflictError, SpecError
from deployer.records import Operation, Traffic
from deployer.spec import Autoscaling, Spec

pytestmark = pytest.mark.timeout(90)
EP = "churn-az"


def first_release(arm: ArmFake, tmp_path: Path, **kw: object) -> tuple[object, object]:
    p = make_provider(tmp_path / "home", **kw)
    r1 = make_release(p, tmp_path, EP, "r0001")
    assert settle(p, p.deploy_release(r1, Traffic.all_to("r0001"))) == "succeeded"
    assert settle(p, p.route(EP, Traffic.all_to("r0001"))) == "succeeded"
    return p, r1


def test_resources_carry_the_fingerprint_and_observe_reads_it(arm: ArmFake, tmp_path: Path) -> None:
    p, r1 = first_release(arm, tmp_path)
    dep = arm.resources[("deployment", EP, "r0001")]
    assert dep["tags"]["deployer-fingerprint"] == r1.fingerprint
    assert dep["tags"]["deployer-artifact"] == r1.artifact.digest
    model = arm.resources[("models", EP, "1")]
    assert model["properties"]["tags"]["deployer-fingerprint"] == r1.fingerprint
    obs = p.observe(EP)
    assert obs is not None and obs.traffic.weights == {"r0001": 100}
    assert obs.releases["r0001"].fingerprint == r1.fingerprint and obs.releases["r0001"].status == "ready"


def test_a_reused_name_with_another_fingerprint_is_a_conflict(arm: ArmFake, tmp_path: Path) -> None:
    first_release(arm, tmp_path)
    other = make_provider(tmp_path / "other-home")
    r1_other = make_release(other, tmp_path, EP, "r0001", seed=5, fingerprint="another-ledger")
    before = len(arm.calls)
    with pytest.raises(ConflictError, match="another ledger"):
        other.deploy_release(r1_other, Traffic.all_to("r0001"))
    assert not [c for c in arm.calls[before:] if c.startswith("PUT")]


def test_deployments_made_elsewhere_are_reported_without_a_fingerprint(arm: ArmFake, tmp_path: Path) -> None:
    p, _ = first_release(arm, tmp_path)
    arm.resources[("deployment", EP, "blue")] = {
        **arm.resources[("deployment", EP, "r0001")],
        "tags": {},
    }
    obs = p.observe(EP)
    assert obs is not None and obs.releases["blue"].fingerprint is None


def test_updating_is_reported_as_updating(arm: ArmFake, tmp_path: Path) -> None:
    p, r1 = first_release(arm, tmp_path)
    arm.resources[("deployment", EP, "r0001")]["properties"]["provisioningState"] = "Updating"
    obs = p.observe(EP)
    assert obs is not None and obs.releases["r0001"].status == "updating"


def test_a_saved_continuation_token_resumes_the_same_operation(arm: ArmFake, tmp_path: Path) -> None:
    arm.lro_polls = 6
    p, _ = first_release(arm, tmp_path)
    r2 = make_release(p, tmp_path, EP, "r0002", seed=2)
    op = p.deploy_release(r2, Traffic(weights={"r0001": 100}))
    assert "token" in op.ref
    saved = json.loads(op.model_dump_json())  # as the ledger journals it
    puts = [c for c in arm.calls if c.startswith("PUT") and c.endswith("/deployments/r0002")]
    assert len(puts) == 1

    # the process dies; a new one repeats deploy_release and then polls what it got back
    again = make_provider(tmp_path / "home")
    resumed = again.deploy_release(r2, Traffic(weights={"r0001": 100}))
    assert resumed.ref.get("token") == op.ref["token"]
    assert settle(again, Operation.model_validate(saved)) == "succeeded"
    assert settle(again, resumed) == "succeeded"
    puts = [c for c in arm.calls if c.startswith("PUT") and c.endswith("/deployments/r0002")]
    assert len(puts) == 1, "the resumed deploy must not send a second PUT"
    assert "Authorization" not in op.ref["token"] and "fake-arm-token" not in op.ref["token"]


def test_new_endpoint_is_created_then_the_deployment(arm: ArmFake, tmp_path: Path) -> None:
    p = make_provider(tmp_path / "home")
    r1 = make_release(p, tmp_path, EP, "r0001")
    op = p.deploy_release(r1, Traffic.all_to("r0001"))
    assert op.ref["what"] == "endpoint" and ("deployment", EP, "r0001") not in arm.resources
    assert settle(p, op) == "succeeded"
    assert arm.resources[("deployment", EP, "r0001")]["properties"]["provisioningState"] == "Succeeded"


def test_a_failed_deployment_is_reported_failed(arm: ArmFake, tmp_path: Path) -> None:
    p, _ = first_release(arm, tmp_path)
    arm.fail_deployments.add("r0002")
    r2 = make_release(p, tmp_path, EP, "r0002", seed=2)
    assert settle(p, p.deploy_release(r2, Traffic.all_to("r0001"))) == "failed"


def test_traffic_and_mirror_rules_are_refused_before_any_call(arm: ArmFake, tmp_path: Path) -> None:
    p = make_provider(tmp_path / "home")
    bad = [
        Traffic(weights={"r0001": 100}, mirror={"r0002": 60}),
        Traffic(weights={"r0001": 100}, mirror={"r0002": 20, "r0003": 20}),
    ]
    for traffic in bad:
        with pytest.raises(SpecError, match="traffic.mirror"):
            p.route(EP, traffic)
    assert arm.calls == []


def test_the_fake_refuses_what_azure_refuses(arm: ArmFake, tmp_path: Path) -> None:
    p, _ = first_release(arm, tmp_path)
    svc = p._clients.service()
    ep = svc.online_endpoints.get("rg", "ws", EP)
    body = ep.as_dict()
    # mirror to the deployment that has live traffic
    body["properties"]["mirrorTraffic"] = {"r0001": 10}
    with pytest.raises(HttpResponseError) as err:
        svc.online_endpoints.begin_create_or_update("rg", "ws", EP, rest.OnlineEndpoint(body), polling=False)
    assert err.value.status_code == 400
    # traffic that does not sum to 100, and traffic to a deployment that does not exist
    for traffic in ({"r0001": 90}, {"r0001": 50, "green": 50}):
        body["properties"]["mirrorTraffic"] = {}
        body["properties"]["traffic"] = traffic
        with pytest.raises(HttpResponseError):
            svc.online_endpoints.begin_create_or_update("rg", "ws", EP, rest.OnlineEndpoint(body), polling=False)
    # an unknown field in the body (a typo the SDK's models would silently carry)
    body["properties"]["traffic"] = {"r0001": 100}
    body["properties"]["mirrorTrafic"] = {"r0001": 10}
    with pytest.raises(HttpResponseError, match="mirrorTrafic"):
        svc.online_endpoints.begin_create_or_update("rg", "ws", EP, rest.OnlineEndpoint(body), polling=False)
    # deleting a deployment that still has traffic
    with pytest.raises(HttpResponseError):
        svc.online_deployments.begin_delete("rg", "ws", EP, "r0001", polling=False)
    with pytest.raises(ConflictError):
        p.retire_release(EP, "r0001")
    # a 33-character endpoint name
    with pytest.raises(HttpResponseError):
        svc.online_endpoints.begin_create_or_update("rg", "ws", "e" * 33, rest.OnlineEndpoint(body), polling=False)


def test_throttling_and_unavailability_are_retried_by_the_sdk(arm: ArmFake, tmp_path: Path) -> None:
    p, _ = first_release(arm, tmp_path)
    arm.faults.extend([429, 503])
    obs = p.observe(EP)
    assert obs is not None and obs.traffic.weights == {"r0001": 100}
    assert arm.faults == []


def test_missing_resources_read_as_absent_and_deletes_are_idempotent(arm: ArmFake, tmp_path: Path) -> None:
    p = make_provider(tmp_path / "home")
    assert p.observe("nothing-here") is None
    assert p.retire_release("nothing-here", "r0001").done
    assert p.destroy("nothing-here").done


def test_scale_writes_an_enabled_autoscale_setting(arm: ArmFake, tmp_path: Path) -> None:
    p, _ = first_release(arm, tmp_path)
    op = p.scale(EP, "r0001", Autoscaling(min=2, max=5, target_metric="cpu_utilization", target_value=60))
    assert op.done
    setting = arm.resources[("autoscale", f"{EP}-r0001")]["properties"]
    assert setting["enabled"] is True
    assert setting["profiles"][0]["capacity"] == {"minimum": "2", "maximum": "5", "default": "2"}
    rule = setting["profiles"][0]["rules"][0]["metricTrigger"]
    assert rule["metricName"] == "CpuUtilizationPercentage" and rule["threshold"] == 60
    assert setting["targetResourceUri"].endswith(f"/onlineEndpoints/{EP}/deployments/r0001")
    with pytest.raises(CapabilityError):
        p.scale(EP, "r0001", Autoscaling(min=0, max=2, scale_to_zero=True))
    settle(p, p.route(EP, Traffic.all_to("r0001")))
    assert settle(p, p.destroy(EP)) == "succeeded"
    assert ("autoscale", f"{EP}-r0001") not in arm.resources


def test_metrics_are_per_release_and_arrive_after_the_delay(arm: ArmFake, tmp_path: Path) -> None:
    arm.metrics.delay_s = 0.5
    p, _ = first_release(arm, tmp_path)
    for _ in range(5):
        assert p.invoke(EP, [[0.1, 0.2, 0.3, 0.4]]).status == 200
    assert p.metrics(EP, "r0001", 60).requests == 0  # not published yet
    time.sleep(0.6)
    m = p.metrics(EP, "r0001", 60)
    assert m.requests == 5 and m.errors == 0 and m.p99_ms is not None
    assert p.metrics(EP, "r0002", 60).requests == 0


def test_token_auth_mode_scores_with_an_aml_token(arm: ArmFake, tmp_path: Path) -> None:
    p, _ = first_release(arm, tmp_path, auth_mode="aml_token")
    resp = p.invoke(EP, [[0.1, 0.2, 0.3, 0.4]])
    assert resp.status == 200 and resp.release == "r0001"
    assert "arm:POST onlineEndpoints/token" in arm.recorded


def test_validate_names_the_field_and_the_fix(arm: ArmFake, tmp_path: Path) -> None:
    p = make_provider(tmp_path / "home")
    base = {
        "name": "churn",
        "target": {"provider": "azure", "region": "eastus", "subscription": "s", "workspace": "rg/ws"},
        "model": {"path": str(tmp_path), "flavor": "sklearn"},
    }
    p.validate(Spec.model_validate(base))
    cases = {
        "name": {**base, "name": "a" * 33},
        "target.subscription": {**base, "target": {**base["target"], "subscription": None}},
        "target.resource_group": {**base, "target": {**base["target"], "workspace": "ws"}},
        "strategy.shadow.percent": {**base, "strategy": {"shadow": {"percent": 60}}},
        "provider_options.auth_mode": {**base, "provider_options": {"auth_mode": "password"}},
    }
    for field, data in cases.items():
        with pytest.raises(SpecError) as err:
            p.validate(Spec.model_validate(data))
        assert err.value.field == field, (field, err.value)
    ok = {**base, "name": "ab1", "target": {**base["target"], "workspace": "ws", "resource_group": "rg"}}
    p.validate(Spec.model_validate(ok))


def test_the_example_config_passes_the_offline_checks(tmp_path: Path) -> None:
    from deployer import config

    path = Path(__file__).resolve().parents[2] / "configs" / "azure-example.yaml"
    environ = {"AZURE_SUBSCRIPTION_ID": "sub", "AZURE_STORAGE_ACCOUNT": "acct1"}
    data = config.resolve(config.read_yaml(path), env_name=None, environ=environ, base_dir=path.parent)
    spec = config.validate(data, check_paths=False)
    make_provider(tmp_path, **spec.provider_options).validate(spec)


def test_thirty_percent_of_arm_requests_throttled_still_deploys(
    arm: ArmFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.core.pipeline.policies import RetryPolicy
    from conftest import TARGET

    from deployer.testing import ConformanceTarget, Harness, make_model

    monkeypatch.setattr(RetryPolicy, "sleep", lambda self, settings, transport, response=None: None)
    arm.fault_rate = 0.3  # 429 / 503 answered by the fake itself: azure-core's retries, then the core's
    ct = ConformanceTarget(target=TARGET, ledger_path=tmp_path / "ledger.db", provider_options={"container": "models"})
    h = Harness(ct.ledger_path)
    out = h.deploy(ct.spec(EP, make_model(tmp_path / "m", 1)))
    assert out.outcome == "deployed"
    assert arm.fault_count > 5
    arm.fault_rate = 0.0
    obs = make_provider(tmp_path / "home").observe(EP)
    assert obs is not None and obs.traffic.weights == {"r0001": 100}


def test_a_crash_while_the_endpoint_is_created_resumes_it(arm: ArmFake, tmp_path: Path) -> None:
    arm.lro_polls = 5
    p = make_provider(tmp_path / "home")
    r1 = make_release(p, tmp_path, EP, "r0001")
    first = p.deploy_release(r1, Traffic.all_to("r0001"))
    assert first.ref["what"] == "endpoint"
    again = make_provider(tmp_path / "home")  # the process died; deploy runs again
    resumed = again.deploy_release(r1, Traffic.all_to("r0001"))
    assert resumed.ref["what"] == "endpoint" and resumed.ref.get("token") == first.ref["token"]
    assert settle(again, resumed) == "succeeded"
    puts = [c for c in arm.calls if c.startswith("PUT") and c.endswith(f"/onlineEndpoints/{EP}")]
    assert len(puts) == 1


def test_route_waits_while_the_endpoint_is_updating(arm: ArmFake, tmp_path: Path) -> None:
    from deployer.errors import TransientError

    p, _ = first_release(arm, tmp_path)
    arm.resources[("endpoint", EP)]["properties"]["provisioningState"] = "Updating"
    with pytest.raises(TransientError):
        p.route(EP, Traffic(weights={"r0001": 100}, mirror={}))
    arm.resources[("endpoint", EP)]["properties"]["provisioningState"] = "Succeeded"
    assert p.route(EP, Traffic.all_to("r0001")).done
