"""The gcp provider on the Vertex AI fake: releases, traffic, scale, re-attachment, ownership, faults."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from deployer_gcp import vertex as vx

from deployer.errors import CapabilityError, ConflictError, NotFoundError, TransientError
from deployer.records import Traffic
from deployer.spec import Autoscaling

from .conftest import PROJECT, REGION
from .fake_server import FakeServer
from .helpers import artifact, make_provider, release, wait

pytestmark = pytest.mark.timeout(90)
PARENT = f"projects/{PROJECT}/locations/{REGION}"


def test_lro_is_pending_for_several_polls_and_served_at_v1_and_ui(vertex: FakeServer, tmp_path: Path) -> None:
    vertex.fake.pending_polls = 6
    p = make_provider(vertex, tmp_path)
    op = p.deploy_release(release("r0001", artifact(p, tmp_path)), Traffic())
    states = [p.poll(op).state for _ in range(5)]
    assert states == ["running"] * 5
    name = op.ref["lro"].split(",")[0]
    for prefix in ("v1", "ui"):
        body = requests.get(f"{vertex.url}/{prefix}/{name}", timeout=5).json()
        assert body["name"] == name
    assert wait(p, op).state == "succeeded"
    obs = p.observe("churn")
    assert obs is not None and obs.traffic.weights == {"r0001": 100}
    assert obs.releases["r0001"].fingerprint == "fpr0001"


def test_killed_deploy_reattaches_to_the_same_operation(vertex: FakeServer, tmp_path: Path) -> None:
    p = make_provider(vertex, tmp_path)
    ref = artifact(p, tmp_path)
    wait(p, p.deploy_release(release("r0001", ref), Traffic()))
    vertex.fake.pending_polls = 10
    rel = release("r0002", ref, fingerprint="fpr0002")
    op = p.deploy_release(rel, Traffic.all_to("r0001"))  # uploads the model version
    for _ in range(30):  # poll until the upload is done and the DeployModel has been sent
        if vertex.fake.calls["endpoints.deployModel"] == 2 or p.poll(op).state != "running":
            break
    assert vertex.fake.calls["endpoints.deployModel"] == 2  # the DeployModel of r0002 is in flight
    again = make_provider(vertex, tmp_path)  # a new process: no memory of the first
    resumed = again.deploy_release(rel, Traffic.all_to("r0001"))
    assert resumed.ref["phase"] == "deploy" and resumed.ref["lro"].startswith(f"{PARENT}/endpoints/churn/operations/")
    assert wait(again, resumed).state == "succeeded"
    assert vertex.fake.calls["endpoints.deployModel"] == 2 and vertex.fake.calls["models.upload"] == 2
    obs = again.observe("churn")
    assert obs is not None and set(obs.releases) == {"r0001", "r0002"} and obs.traffic.weights == {"r0001": 100}


def test_a_release_with_another_fingerprint_is_a_conflict(vertex: FakeServer, tmp_path: Path) -> None:
    p = make_provider(vertex, tmp_path)
    ref = artifact(p, tmp_path)
    wait(p, p.deploy_release(release("r0001", ref), Traffic()))
    with pytest.raises(ConflictError, match="another ledger"):
        p.deploy_release(release("r0001", ref, fingerprint="other"), Traffic())
    # the model version alone (not deployed) is checked too
    wait(p, p.deploy_release(release("r0002", ref), Traffic.all_to("r0001")))
    wait(p, p.retire_release("churn", "r0002"))
    with pytest.raises(ConflictError):
        p.deploy_release(release("r0002", ref, fingerprint="other"), Traffic.all_to("r0001"))


def test_an_endpoint_not_made_by_deployer_is_a_conflict(vertex: FakeServer, tmp_path: Path) -> None:
    p = make_provider(vertex, tmp_path)
    p._vx.create_endpoint("churn", {"display_name": "someone-elses"})
    for _ in range(5):
        requests.get(f"{vertex.url}/ui/{PARENT}/endpoints/churn/operations/" + next(
            n.rsplit("/", 1)[1] for n in vertex.fake.ops), timeout=5)
    with pytest.raises(ConflictError, match="not made by deployer"):
        p.observe("churn")


def test_traffic_split_rules(vertex: FakeServer, tmp_path: Path) -> None:
    p = make_provider(vertex, tmp_path)
    ref = artifact(p, tmp_path)
    wait(p, p.deploy_release(release("r0001", ref), Traffic()))
    wait(p, p.deploy_release(release("r0002", ref), Traffic.all_to("r0001")))
    with pytest.raises(NotFoundError):
        p.route("churn", Traffic(weights={"r0001": 50, "r0009": 50}))
    view = p._view("churn")
    assert view is not None
    ids = {r: d.id for r, d in view.deployed.items()}
    ep = f"{PARENT}/endpoints/churn"
    # the API itself refuses a split that does not sum to 100 or names an undeployed id
    for split in ({ids["r0001"]: 60, ids["r0002"]: 30}, {ids["r0001"]: 50, "424242": 50}):
        with pytest.raises(Exception) as err:
            p._vx.set_traffic(ep, split)
        assert getattr(err.value, "code", None) == 400
    # undeploying a model that still has traffic is refused
    with pytest.raises(ConflictError, match="traffic"):
        p.retire_release("churn", "r0001")
    with pytest.raises(Exception) as err:
        p._vx.undeploy_model(ep, ids["r0001"], {})
    assert "still has traffic" in str(err.value)
    assert p.route("churn", Traffic(weights={"r0001": 50, "r0002": 50})).done
    obs = p.observe("churn")
    assert obs is not None and obs.traffic.weights == {"r0001": 50, "r0002": 50}
    with pytest.raises(CapabilityError):
        p.route("churn", Traffic(weights={"r0001": 100}, mirror={"r0002": 10}))


def test_scale_mutates_the_deployed_model(vertex: FakeServer, tmp_path: Path) -> None:
    p = make_provider(vertex, tmp_path)
    wait(p, p.deploy_release(release("r0001", artifact(p, tmp_path)), Traffic()))
    auto = Autoscaling(min=2, max=5, target_metric="cpu_utilization", target_value=70)
    assert wait(p, p.scale("churn", "r0001", auto)).state == "succeeded"
    view = p._view("churn")
    assert view is not None
    d = view.deployed["r0001"]
    assert (d.min_replicas, d.max_replicas) == (2, 5)
    assert d.metric_specs == [{"metric_name": vx.CPU_METRIC, "target": 70}]
    assert p.scale("churn", "r0001", auto).done  # unchanged: no call
    assert vertex.fake.calls["endpoints.mutateDeployedModel"] == 1


def test_throttling_and_unavailable_are_retried_by_the_sdk_retry(vertex: FakeServer, tmp_path: Path) -> None:
    p = make_provider(vertex, tmp_path)
    vertex.fake.faults[:] = [429, 503, 429]
    assert p.observe("churn") is None
    assert vertex.fake.faults == []
    vertex.fake.faults[:] = [503] * 500
    with pytest.raises(TransientError):
        p.observe("churn")
    vertex.fake.faults.clear()


def test_404s_and_idempotent_retire_and_destroy(vertex: FakeServer, tmp_path: Path) -> None:
    p = make_provider(vertex, tmp_path)
    assert p.observe("nothing") is None
    with pytest.raises(NotFoundError):
        p.route("nothing", Traffic.all_to("r0001"))
    assert p.retire_release("nothing", "r0001").done
    assert wait(p, p.destroy("nothing")).state == "succeeded"


def test_a_misspelled_field_is_refused_by_the_fake(vertex: FakeServer) -> None:
    url = f"{vertex.url}/v1/{PARENT}/endpoints?endpointId=x1"
    resp = requests.post(url, json={"displayName": "x", "trafficSplitt": {}}, timeout=5)
    assert resp.status_code == 400 and "trafficSplitt" in resp.text


def test_prebuilt_container_refuses_a_model_of_another_sklearn_version(vertex: FakeServer, tmp_path: Path) -> None:
    p = make_provider(vertex, tmp_path, image=None, sklearn_version="1.6")
    op = p.deploy_release(release("r0001", artifact(p, tmp_path)), Traffic())
    status = wait(p, op)
    assert status.state == "failed" and "does not load in" in (status.message or ""), (status, vertex.fake.errors)


def test_killed_while_the_endpoint_is_created_resumes(vertex: FakeServer, tmp_path: Path) -> None:
    vertex.fake.pending_polls = 8
    first = make_provider(vertex, tmp_path)
    rel = release("r0001", artifact(first, tmp_path))
    first.deploy_release(rel, Traffic())  # Endpoint and Model creation start; the process dies here
    again = make_provider(vertex, tmp_path)
    op = again.deploy_release(rel, Traffic())  # both already being created: refused (409), so it waits for them
    assert len([o for o in vertex.fake.ops.values() if not o.done]) == 2  # no second creation was started
    assert wait(again, op).state == "succeeded"
    assert vertex.fake.calls["endpoints.deployModel"] == 1 and len(vertex.fake.models["churn"]) == 1
    obs = again.observe("churn")
    assert obs is not None and obs.traffic.weights == {"r0001": 100}
