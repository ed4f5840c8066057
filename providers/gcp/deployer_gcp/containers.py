"""Which serving container runs a release on Vertex AI. Imports no SDK.

A scikit-learn model runs in Vertex's prebuilt prediction container of the same scikit-learn
minor version (a pickle is only guaranteed to load in the version that wrote it). The prebuilt
images and their versions are listed on
https://cloud.google.com/vertex-ai/docs/predictions/pre-built-containers (also in the SDK's
``google/cloud/aiplatform/constants/prediction.py``); the images live in three multi-regional
Artifact Registry repositories, ``us-``, ``europe-`` and ``asia-docker.pkg.dev/vertex-ai/prediction``.
The prebuilt container loads ``model.joblib`` (or ``model.pkl``) from the model's ``artifactUri``
directory and answers ``{"predictions": [...]}`` to ``{"instances": rows}``
(https://cloud.google.com/vertex-ai/docs/training/exporting-model-artifacts#scikit-learn).
"""

from __future__ import annotations

from typing import Any

SKLEARN_VERSIONS = ("0.20", "0.22", "0.23", "0.24", "1.0", "1.2", "1.3", "1.4", "1.5", "1.6")
"""scikit-learn versions with a prebuilt CPU prediction container (sklearn-cpu.X-Y)."""

PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/health"
"""Routes a custom ``image`` serves (the deployer serving image answers both; Vertex sets AIP_* env)."""


def model_versions(release: Any = None) -> dict[str, str]:
    """Python (major.minor), scikit-learn and numpy versions the model was packaged with: the
    ``runtime`` fields that :func:`deployer.artifacts.runtime_versions` writes into the artifact manifest."""
    from deployer.artifacts import runtime_versions

    recorded = runtime_versions()
    out = {"python": ".".join(recorded["python"].split(".")[:2])}
    for dist, key in (("scikit-learn", "sklearn"), ("numpy", "numpy")):
        if dist in recorded:
            out[key] = recorded[dist]
    return out


def minor(version: str) -> str:
    """'1.6.1' -> '1.6'."""
    return ".".join(version.split(".")[:2])


def repository(region: str) -> str:
    """The multi-regional repository nearest ``region`` (europe-*, asia-* / australia-*, else us)."""
    if region.startswith("europe-"):
        return "europe-docker.pkg.dev"
    if region.startswith(("asia-", "australia-")):
        return "asia-docker.pkg.dev"
    return "us-docker.pkg.dev"


def sklearn_image(region: str, version: str) -> str | None:
    """The prebuilt image for scikit-learn ``version`` (major.minor), or None when there is none."""
    if version not in SKLEARN_VERSIONS:
        return None
    return f"{repository(region)}/vertex-ai/prediction/sklearn-cpu.{version.replace('.', '-')}:latest"


def image_version(image: str) -> str | None:
    """The scikit-learn version of a prebuilt image URI ('.../sklearn-cpu.1-6:latest' -> '1.6')."""
    tail = image.rsplit("/", 1)[-1]
    if not tail.startswith("sklearn-cpu."):
        return None
    return tail.split(".", 1)[1].split(":")[0].replace("-", ".")
