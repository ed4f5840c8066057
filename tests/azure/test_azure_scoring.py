"""The generated scoring script run in-process on a packaged model, as Azure ML's inference server runs it
(``init()`` with ``AZUREML_MODEL_DIR`` set, then ``run(raw_body)``), and the determinism of what is generated."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from deployer_azure import scoring

from deployer.artifacts import package
from deployer.testing import make_model

pytestmark = pytest.mark.timeout(60)


def load_script(tmp_path: Path) -> Any:
    data, _ = scoring.script()
    path = tmp_path / scoring.SCRIPT_NAME
    path.write_bytes(data)
    spec = importlib.util.spec_from_file_location("generated_score", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scoring_script_gives_the_models_own_predictions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_file = make_model(tmp_path / "src", seed=3)
    packaged = package(model_file, tmp_path / "pkg")
    mounted = tmp_path / "azureml-models" / "churn" / "1"
    mounted.mkdir(parents=True)
    (mounted / "model.tar.gz").write_bytes(packaged.path.read_bytes())
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "azureml-models"))

    score = load_script(tmp_path)
    score.init()
    rows = np.random.default_rng(0).normal(size=(7, 4))
    want = joblib.load(model_file).predict(rows).tolist()
    for body in (
        json.dumps(rows.tolist()),
        json.dumps({"instances": rows.tolist()}),
        json.dumps({"data": rows.tolist()}),
    ):
        assert score.run(body) == {"predictions": want}


def test_scoring_script_error_surfaces_for_a_wrong_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_file = make_model(tmp_path / "src", seed=1, n_features=3)
    packaged = package(model_file, tmp_path / "pkg")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(packaged.path.parent))
    score = load_script(tmp_path)
    score.init()
    with pytest.raises(ValueError):
        score.run(json.dumps([[0.1, 0.2, 0.3, 0.4]]))


def test_generated_assets_are_content_addressed() -> None:
    a, da = scoring.script()
    b, db = scoring.script()
    assert a == b and da == db
    versions = scoring.runtime_versions()
    assert set(versions) >= {"scikit-learn", "numpy"}
    conda, v1 = scoring.environment(versions, "img:1")
    pins = conda["dependencies"][-1]["pip"]
    assert f"scikit-learn=={versions['scikit-learn']}" in pins and f"numpy=={versions['numpy']}" in pins
    assert scoring.environment(versions, "img:1")[1] == v1
    assert scoring.environment({**versions, "numpy": "1.26.4"}, "img:1")[1] != v1
    assert scoring.environment(versions, "img:2")[1] != v1


def test_versions_come_from_the_artifact_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployer import artifacts

    recorded = {"python": "3.11.7", "scikit-learn": "1.5.2", "numpy": "1.26.4"}
    monkeypatch.setattr(artifacts, "runtime_versions", lambda: recorded)
    versions = scoring.runtime_versions()
    assert versions["scikit-learn"] == "1.5.2" and versions["numpy"] == "1.26.4"
