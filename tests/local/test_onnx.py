"""ONNX for real: the onnx flavor and ``serving.compile: onnx`` serve what scikit-learn predicts."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestCentroid

from deployer.artifacts import MANIFEST_NAME as ARTIFACT_MANIFEST
from deployer.artifacts import identify, read_manifest
from deployer.local.provider import LocalProvider
from deployer.serving.compile import GRAPH
from deployer.serving.loader import OnnxPredictor, SklearnPredictor, load
from deployer.serving.settings import read_settings
from deployer.spec import Serving

from .serving_kit import deploy, fresh_post

pytestmark = pytest.mark.timeout(120)


def _data(features: int = 20, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n, features))
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] > 0).astype(int)
    return x[:400], y[:400], x[400:].round(5)


def _served(url: str, rows: np.ndarray) -> np.ndarray:
    status, body = fresh_post(url, rows.tolist())
    assert status == 200, body
    return np.asarray(body["predictions"])


def test_onnx_flavor_serves_what_sklearn_predicts(provider: LocalProvider, tmp_path: Path) -> None:
    from skl2onnx import to_onnx

    x, y, test = _data()
    model = RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0).fit(x, y)
    src = tmp_path / "onnx-model"
    src.mkdir()
    graph = to_onnx(model, x[:1], options={id(model): {"zipmap": False}})  # a double graph: exact
    (src / "model.onnx").write_bytes(graph.SerializeToString())
    url = deploy(provider, src, flavor="onnx")
    np.testing.assert_array_equal(_served(url, test), model.predict(test))
    assert [int(_served(url, test[i : i + 1])[0]) for i in range(10)] == model.predict(test[:10]).tolist()
    assert fresh_post(url, [[1.0, 2.0]])[0] == 422, "the graph's width is enforced before it runs"


def test_compile_onnx_random_forest_serves_the_graph_with_sklearn_predictions(
    provider: LocalProvider, tmp_path: Path
) -> None:
    x, y, test = _data()
    model = RandomForestClassifier(n_estimators=40, max_depth=8, random_state=0).fit(x, y)
    src = tmp_path / "rf"
    src.mkdir()
    joblib.dump(model, src / "model.joblib")

    packaged = identify(src, serving=Serving(compile="onnx"))
    assert any("reproduced model.predict" in n for n in packaged.notes), packaged.notes
    tree = packaged.stage(tmp_path / "unpacked")
    assert sorted(p.name for p in tree.iterdir()) == sorted([ARTIFACT_MANIFEST, "model.joblib", GRAPH])
    manifest = read_manifest(tree)["serving"]
    assert manifest["compile"]["file"] == GRAPH and manifest["compile"]["inputs"]["width"] == 20
    assert read_settings(tree).compiled == GRAPH, "one manifest: the worker reads its serving section"
    assert isinstance(load(tmp_path / "unpacked", "sklearn"), OnnxPredictor), "the graph serves, not the pickle"

    url = deploy(provider, src, packaged=packaged)
    np.testing.assert_array_equal(_served(url, test), model.predict(test))
    assert fresh_post(url, [[None] * 20])[0] == 422, "nulls are refused: the graph's handling of them is not verified"


def test_compile_onnx_keeps_sklearn_and_says_why_when_it_cannot_convert(tmp_path: Path) -> None:
    x, y, test = _data(features=3)
    model = NearestCentroid().fit(x, y)
    src = tmp_path / "nc"
    src.mkdir()
    joblib.dump(model, src / "model.joblib")
    packaged = identify(src, serving=Serving(compile="onnx"))
    assert len(packaged.notes) == 1 and "serving the scikit-learn model itself" in packaged.notes[0]
    assert "NearestCentroid" in packaged.notes[0]
    tree = packaged.stage(tmp_path / "unpacked")
    assert not (tree / GRAPH).exists()
    manifest = json.loads((tree / ARTIFACT_MANIFEST).read_bytes())["serving"]
    assert manifest["compile"]["file"] is None and "NearestCentroid" in manifest["compile"]["reason"]
    predictor = load(tmp_path / "unpacked", "sklearn")
    assert isinstance(predictor, SklearnPredictor)
    np.testing.assert_array_equal(predictor.predict(test.tolist()), model.predict(test))


def test_default_serving_leaves_the_artifact_unchanged(tmp_path: Path) -> None:
    x, y, _ = _data(features=4)
    src = tmp_path / "lr"
    src.mkdir()
    joblib.dump(LogisticRegression().fit(x, y), src / "model.joblib")
    assert identify(src).digest == identify(src, serving=Serving()).digest
    assert "serving" not in read_manifest(identify(src).stage(tmp_path / "tree"))


def test_compile_onnx_is_only_for_sklearn_models() -> None:
    from pydantic import ValidationError

    from deployer.spec import Spec

    with pytest.raises(ValidationError, match="serving.compile 'onnx' converts sklearn models"):
        Spec.model_validate(
            {
                "name": "svc",
                "model": {"path": "m", "flavor": "python", "entrypoint": "m:Model"},
                "serving": {"compile": "onnx"},
            }
        )
    with pytest.raises(ValidationError, match="max_batch"):
        Spec.model_validate({"name": "svc", "model": {"path": "m"}, "serving": {"batching": {"max_batch": 0}}})
