"""``model.uri: models:/...`` from a local MLflow registry (sqlite backend, file artifact store under
tmp_path): an sklearn model and a pyfunc model are logged, registered, deployed on the local provider
and answer real predictions; an unchanged version moves no bytes, an alias resolves to its version,
and a digest mismatch is refused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

import deployer
from deployer.config import load_spec
from deployer.errors import DigestMismatchError, NotFoundError, SpecError
from deployer.mlflow_source import ADAPTER_ENTRYPOINT, ADAPTER_MODULE
from deployer.sources import fetch

mlflow = pytest.importorskip("mlflow")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
ROWS = np.array([[0.5, 0.1, -0.2, 0.3], [-2.0, 0.0, 0.3, 0.1]])
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}

PYFUNC = '''
import mlflow
import numpy as np


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return (np.asarray(model_input, dtype=float).sum(axis=1) * 2).tolist()


mlflow.models.set_model(Doubler())
'''


def _trained() -> LogisticRegression:
    rng = np.random.RandomState(0)
    x = rng.randn(100, 4)
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A registry with churn v1 (sklearn, alias 'champion') and doubler v1 (pyfunc from code)."""
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        for k, v in QUIET.items():
            mp.setenv(k, v)
        import mlflow.pyfunc
        import mlflow.sklearn

        exp = mlflow.create_experiment("deployer-tests", artifact_location=(root / "artifacts").as_uri())
        model = _trained()
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format="cloudpickle",
                pip_requirements=["scikit-learn"],
                registered_model_name="churn",
            )
            code = root / "doubler.py"
            code.write_text(PYFUNC)
            mlflow.pyfunc.log_model(
                name="doubler",
                python_model=str(code),
                pip_requirements=["mlflow-skinny"],
                registered_model_name="doubler",
            )
        mlflow.MlflowClient().set_registered_model_alias("churn", "champion", "1")
        yield {"model": model, "run_id": run.info.run_id}


def _spec(tmp_path: Path, name: str, model: dict[str, str]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "model": model}))
    return path


def test_registered_sklearn_and_pyfunc_models_deploy_and_serve(
    registry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    spec = _spec(tmp_path, "churn", {"uri": "models:/churn/1"})
    ep = deployer.apply(spec)
    try:
        assert ep.predict(ROWS) == registry["model"].predict(ROWS).tolist()
        again = deployer.apply(spec)
        assert again.last is not None and again.last.outcome == "unchanged"
        assert not fetch("models:/churn/1", None, home).downloaded, "an unchanged version is not downloaded again"
    finally:
        ep.destroy()
    pinned = fetch("models:/churn@champion", None, home)
    assert pinned.digest == fetch("models:/churn/1", None, home).digest, "the alias resolves to version 1"

    doubler = _spec(tmp_path, "doubler", {"uri": "models:/doubler/1"})
    ep = deployer.apply(doubler)
    try:
        assert ep.predict([[1, 2], [3, 4]]) == [6.0, 14.0]
        served = fetch("models:/doubler/1", None, home).path
        assert (served / f"{ADAPTER_MODULE}.py").is_file()
        (release,) = [row.release for row in deployer.history("doubler")]
        assert release.flavor == "python" and release.entrypoint == ADAPTER_ENTRYPOINT
    finally:
        ep.destroy()


def test_digest_mismatch_missing_versions_and_bad_uris_are_refused(
    registry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    with pytest.raises(DigestMismatchError):
        deployer.apply(_spec(tmp_path, "wrong", {"uri": "models:/churn/1", "digest": "sha256:" + "0" * 64}))
    assert not any((tmp_path / "home" / "sources").glob("sha256/*"))
    with pytest.raises(NotFoundError):
        fetch("models:/churn/9", None, tmp_path / "home")
    with pytest.raises(SpecError, match="models:/NAME/VERSION"):
        load_spec(_spec(tmp_path, "bad-uri", {"uri": "models:/churn/1/extra"}))
    with pytest.raises(SpecError, match="model.flavor"):
        deployer.apply(_spec(tmp_path, "explicit", {"uri": "models:/doubler/1", "flavor": "sklearn"}))
    assert os.environ["MLFLOW_TRACKING_URI"].startswith("sqlite:///")
