"""The scoring script and environment Azure ML runs for a scikit-learn release (generated; content-addressed).

A non-MLflow model on a managed online deployment needs ``code_configuration`` (a directory holding a
scoring script with ``init()`` and ``run(raw_data)``) and an environment
(https://learn.microsoft.com/azure/machine-learning/how-to-deploy-online-endpoints#understand-the-scoring-script).
Azure ML mounts the registered model under ``AZUREML_MODEL_DIR``; ours is deployer's ``model.tar.gz``,
from which ``init()`` loads the model file with joblib in memory (nothing is extracted to disk).

Both are pure functions of their inputs: the script is a constant and the conda file is rendered from
the scikit-learn and numpy versions the model was packaged with, so their sha256 names them (the code
asset version and the environment version), and an unchanged release registers nothing new.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any

from deployer.serving import codec

SCRIPT_NAME = "score.py"
PYTHON = "3.11"

_HEADER = '''\
"""deployer's scoring script for Azure ML managed online deployments (generated; do not edit).

Bodies are decoded and answers encoded by deployer's serving codec (below, verbatim), the same code
deployer's own container runtime and the local endpoint use.
"""
'''

_SCORING = """

import io as _io
import os as _os
import tarfile as _tarfile

import joblib as _joblib
import numpy as _np

_SUFFIXES = (".joblib", ".pkl", ".pickle")
model = None


def _pick(names):
    preferred = [n for n in names if _os.path.basename(n).startswith("model.")]
    return (preferred or names)[0]


def _load_packed(archive):
    # Load the model straight out of deployer's model.tar.gz: nothing is extracted to disk.
    with _tarfile.open(archive, "r:gz") as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile() and m.name.endswith(_SUFFIXES))
        if not names:
            raise FileNotFoundError(f"no .joblib/.pkl model in {archive}")
        return _joblib.load(_io.BytesIO(tar.extractfile(_pick(names)).read()))


def init():
    global model
    found = []
    for here, _dirs, files in _os.walk(_os.environ.get("AZUREML_MODEL_DIR", ".")):
        if "model.tar.gz" in files:
            model = _load_packed(_os.path.join(here, "model.tar.gz"))
            return
        found += [_os.path.join(here, f) for f in sorted(files) if f.endswith(_SUFFIXES)]
    if not found:
        raise FileNotFoundError("no .joblib/.pkl model under AZUREML_MODEL_DIR")
    model = _joblib.load(_pick(found))


def run(raw_data):
    rows = rows_of(json.loads(raw_data) if isinstance(raw_data, (str, bytes, bytearray)) else raw_data)
    return predictions_body(model.predict(_np.asarray(rows)))
"""

SCORING_SCRIPT = _HEADER + codec.source() + _SCORING
"""The scoring script: deployer's serving codec (:mod:`deployer.serving.codec`), ``init()`` and ``run()``."""


PORT = 5001
ROUTES = {"liveness_route": "/", "readiness_route": "/ready", "scoring_route": "/score"}
"""Where a ``deployer build`` image answers under Azure ML's contract (deployer.serving.contracts)."""


def image_environment(image: str) -> tuple[dict[str, Any], str]:
    """The inference configuration of a custom-container environment running ``image``, and a version
    naming (image, configuration) by content
    (https://learn.microsoft.com/azure/machine-learning/how-to-deploy-custom-container)."""
    config = {name: {"path": path, "port": PORT} for name, path in ROUTES.items()}
    key = json.dumps({"image": image, "inference_config": config}, sort_keys=True).encode()
    return config, digest(key)[:32]


def serving_env(release: Any) -> dict[str, str]:
    """What a ``deployer build`` image reads besides its own ENV: the flavor and the release it serves."""
    env = {"DEPLOYER_FLAVOR": release.flavor, "DEPLOYER_RELEASE": release.id}
    if release.entrypoint:
        env["DEPLOYER_ENTRYPOINT"] = release.entrypoint
    return env


def installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def runtime_versions(release: Any = None) -> dict[str, str]:
    """scikit-learn, numpy and joblib versions the model was packaged with: the ``runtime`` fields of the
    artifact manifest (:func:`deployer.artifacts.runtime_versions`), plus joblib, which pickled it."""
    from deployer.artifacts import runtime_versions as recorded_versions

    recorded = recorded_versions()
    out: dict[str, str] = {d: recorded[d] for d in ("scikit-learn", "numpy") if d in recorded}
    joblib = installed_version("joblib")
    if joblib:
        out["joblib"] = joblib
    return out


def conda_file(versions: dict[str, str], python: str = PYTHON) -> dict[str, Any]:
    """The environment's conda specification, pinned to ``versions``."""
    pins = [f"{name}=={version}" for name, version in sorted(versions.items())]
    return {
        "name": "deployer-sklearn",
        "channels": ["conda-forge"],
        "dependencies": [f"python={python}", "pip", {"pip": ["azureml-inference-server-http", *pins]}],
    }


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def script() -> tuple[bytes, str]:
    """The scoring script's bytes and sha256."""
    data = SCORING_SCRIPT.encode()
    return data, digest(data)


def environment(versions: dict[str, str], image: str) -> tuple[dict[str, Any], str]:
    """The conda file and a version string naming (image, conda file) by content."""
    conda = conda_file(versions)
    key = json.dumps({"image": image, "conda": conda}, sort_keys=True).encode()
    return conda, digest(key)[:32]
