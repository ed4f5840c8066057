"""Models of every flavor, packaged as deployer artifacts, and the container runtime run as a plain process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from deployer.artifacts import package
from deployer.testing.processes import stop_process

MODELS = Path(__file__).parent / "models"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [4.8, 3.1, 1.6, 0.2]]


@dataclass(frozen=True)
class Flavored:
    """A packaged model of one flavor and what it must predict for :data:`ROWS`."""

    flavor: str
    src: Path
    archive: Path
    expected: list[object]
    entrypoint: str | None = None


def _training() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
    x = np.vstack([c + rng.normal(0, 0.3, size=(40, 4)) for c in centers])
    y = np.repeat([0, 1, 2], 40)
    return x, y


@pytest.fixture(scope="session")
def flavored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flavored]:
    """sklearn, onnx and python models (the sklearn and onnx ones the same classifier)."""
    import joblib
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("flavored")
    x, y = _training()
    clf = LogisticRegression(max_iter=500).fit(x, y)
    expected = clf.predict(np.asarray(ROWS)).tolist()
    out: dict[str, Flavored] = {}
    src = root / "sklearn-src"
    src.mkdir()
    joblib.dump(clf, src / "model.joblib")
    out["sklearn"] = Flavored("sklearn", src, package(src, root / "sklearn").path, expected)
    src = root / "onnx-src"
    src.mkdir()
    graph = to_onnx(clf, x[:1].astype(np.float64), options={id(clf): {"zipmap": False}})
    (src / "model.onnx").write_bytes(graph.SerializeToString())
    out["onnx"] = Flavored("onnx", src, package(src, root / "onnx", flavor="onnx").path, expected)
    src = MODELS / "rowsum"
    summed = [float(sum(r)) for r in ROWS]
    out["python"] = Flavored("python", src, package(src, root / "python", flavor="python").path, summed, "rowsum:Model")
    return out


@contextmanager
def runtime(env: dict[str, str], log: Path, args: tuple[str, ...] = (), ready: str = "/ready") -> Iterator[None]:
    """``python -m deployer.serving`` under ``env`` until ``ready`` answers 200; stopped by its pid."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "AZUREML_", "SAGEMAKER_", "DEPLOYER_"))}
    full = {**base, "DEPLOYER_HOST": "127.0.0.1", **env}
    port = next(env[k] for k in ("AIP_HTTP_PORT", "SAGEMAKER_BIND_TO_PORT", "DEPLOYER_PORT") if k in env)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deployer.serving", *args], env=full, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the runtime exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the runtime never became ready:\n{log.read_text()}")
            time.sleep(0.1)
        yield
    finally:
        stop_process(proc)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Image tests run when asked for (``-m container`` or ``DEPLOYER_CONTAINER_TESTS=1``, as .ci/run does)."""
    if os.environ.get("DEPLOYER_CONTAINER_TESTS") == "1" or "container" in (config.getoption("-m") or ""):
        return
    skipped = [it for it in items if it.get_closest_marker("container") is not None]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [it for it in items if it.get_closest_marker("container") is None]
