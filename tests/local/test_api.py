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
