"""The notebook path: a fitted model object in, a live Endpoint handle out, every verb on the handle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import deployer
from deployer.errors import NotFoundError, SpecError

pytestmark = pytest.mark.timeout(180)


def _model(seed: int) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 3))
    return LogisticRegression().fit(x, (x[:, 0] > 0.1 * seed).astype(int))


def test_deploy_a_model_object_and_use_the_handle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    m1 = _model(1)
    ep = deployer.deploy(m1, name="nb-churn")
    try:
        rows = np.array([[0.5, 0.1, -0.2], [-2.0, 0.0, 0.3]])
        assert ep.predict(rows) == m1.predict(rows).tolist()
        assert ep.url and ep.url.startswith("http://127.0.0.1:")
        assert ep.status().live == "r0001"
        html = ep._repr_html_()
        assert "nb-churn" in html and "r0001" in html and "100%" in html
        assert "live=r0001" in repr(ep)

        again = deployer.deploy(m1, name="nb-churn")  # same object -> same bytes -> nothing to do
        assert again.last is not None and again.last.outcome == "unchanged"

        m2 = _model(2)
        ep2 = deployer.deploy(m2, name="nb-churn", strategy="blue-green")
        assert ep2.predict(rows) == m2.predict(rows).tolist()
        assert [r.id for r in ep.history()] == ["r0001", "r0002"]
        assert ep.rollback().release == "r0001"
        assert ep.predict(rows) == m1.predict(rows).tolist()
        assert ep.scale(min=2).outcome == "scaled"
        assert ep.status().to_dict()["replicas"] == 2
    finally:
        ep.destroy()
    with pytest.raises(NotFoundError):
        deployer.status("never-deployed")


def test_deploy_call_errors_name_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    with pytest.raises(SpecError) as e:
        deployer.deploy(_model(0), name="Bad_Name")
    assert e.value.field == "name"
    with pytest.raises(SpecError) as e:
        deployer.deploy(tmp_path / "missing.joblib", name="ok-name")
    assert e.value.field == "model.path"
    with pytest.raises(SpecError) as e:
        deployer.deploy(_model(0), name="ok-name", replicas=0)
    assert e.value.field == "resources.replicas"
    assert not (tmp_path / "local").exists()  # nothing was started


def _spec_file(tmp_path: Path, name: str, seed: int, ledger: Path, extra: str = "") -> Path:
    import joblib

    model = tmp_path / f"model-{seed}.joblib"
    joblib.dump(_model(seed), model)
    spec = tmp_path / f"{name}-{seed}-{ledger.parent.name}.yaml"
    spec.write_text(
        f"name: {name}\nmodel: {{path: {model}, flavor: sklearn}}\nstate: {{path: {ledger}}}\n{extra}"
    )
    return spec


def test_unchanged_reapply_after_300_guard_runs_makes_no_provider_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployer.config import load_spec
    from deployer.testing import Harness

    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    ledger = tmp_path / "ledger.db"
    spec = load_spec(_spec_file(tmp_path, "guarded", 1, ledger, "autoscaling: {min: 1, max: 2}\n"))
    h = Harness(ledger)
    try:
        assert h.deploy(spec).outcome == "deployed"
        for _ in range(300):  # each run journals its verdict (inconclusive: no traffic)
            report = deployer.guard("guarded", max_error_rate=0.5, window="1m", min_samples=1, state=str(ledger))
            assert report.outcome == "inconclusive"
        out = h.deploy(spec)
        assert out.outcome == "unchanged"
        assert h.recorder is not None and h.recorder.writes == 0, h.recorder.calls
    finally:
        h.destroy(spec)


def test_cli_two_machines_one_endpoint_then_adopt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from deployer.cli import cli

    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    first = _spec_file(tmp_path, "shared", 1, tmp_path / "a" / "ledger.db")
    second = _spec_file(tmp_path, "shared", 2, tmp_path / "b" / "ledger.db")
    runner = CliRunner()
    try:
        assert runner.invoke(cli, ["deploy", str(first)]).exit_code == 0
        refused = runner.invoke(cli, ["deploy", str(second), "--json"])
        assert refused.exit_code == 3
        error = json.loads(refused.stdout.strip().splitlines()[-1])
        assert error["error"] == "ConflictError" and "r0001" in error["message"]
        assert error["hint"].startswith("take it over with `deployer adopt shared --spec SPEC`")
        adopted = runner.invoke(cli, ["adopt", "shared", "--spec", str(second), "--json"])
        assert adopted.exit_code == 0, adopted.output
        result = json.loads(adopted.stdout.strip().splitlines()[-1])
        assert result["outcome"] == "adopted" and result["release"] == "r0001" and result["notes"]
        deployed = runner.invoke(cli, ["deploy", str(second), "--json"])
        assert deployed.exit_code == 0, deployed.output
        assert json.loads(deployed.stdout.strip().splitlines()[-1])["release"] == "r0002"
    finally:
        runner.invoke(cli, ["destroy", "shared", "--state", str(tmp_path / "b" / "ledger.db")])
        runner.invoke(cli, ["destroy", "shared", "--state", str(tmp_path / "a" / "ledger.db")])
