"""MLflow models as ``model.uri``: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``,
``models:/NAME/STAGE`` (or ``latest``) and ``runs:/RUN_ID/PATH``, read with MLflow's own client and
download API (``mlflow.artifacts.download_artifacts``) when ``mlflow`` is installed
(``pip install 'mldeployer[mlflow]'``). The tracking and registry servers are MLflow's usual
settings (``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``); nothing is stored.

The version tag is the registry's model version and its run id (an alias or a stage is resolved to a
version first, and exactly that version is downloaded, so the bytes kept are the ones the tag names);
for ``runs:/`` it is the run id with its status and end time.

How the release is served is read from the model's ``MLmodel`` file (:func:`served_as`):

* an ``sklearn`` flavor saved as pickle / cloudpickle is served as ``sklearn`` (the loader finds its
  single ``model.pkl``), without MLflow at serve time;
* an ``onnx`` flavor is served as ``onnx``;
* any other model with a ``python_function`` flavor is served as ``python`` through a small adapter
  (``deployer_pyfunc.py``, written beside the model when it is downloaded, so the digest covers it)
  that calls ``mlflow.pyfunc.load_model``; MLflow must then be installed where it is served, and a
  worker without it reports so by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployer.errors import NotFoundError, SpecError, StorageError, TransientError
from deployer.sources import MLFLOW_MODELS as _MODELS
from deployer.sources import MLFLOW_RUNS as _RUNS
from deployer.sources import ProgressFn

INSTALL = "pip install 'mldeployer[mlflow]' (it brings mlflow-skinny)"
MLMODEL = "MLmodel"
ADAPTER_MODULE = "deployer_pyfunc"
ADAPTER_ENTRYPOINT = f"{ADAPTER_MODULE}:MlflowPyfunc"
ADAPTER = '''"""Serves an MLflow pyfunc model (written by deployer beside the model it serves)."""


class MlflowPyfunc:
    @classmethod
    def load(cls, path):
        try:
            import mlflow.pyfunc
        except ImportError as e:
            raise ImportError(
                "this release is an MLflow pyfunc model and its server needs mlflow: "
                "pip install 'mldeployer[mlflow]' where it is served"
            ) from e
        return cls(mlflow.pyfunc.load_model(str(path)))

    def __init__(self, model):
        self._model = model

    def predict(self, rows):
        import numpy as np

        out = self._model.predict(np.asarray(rows))
        return out.tolist() if hasattr(out, "tolist") else out
'''

def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as e:
        raise SpecError("model.uri", "MLflow URIs are read with mlflow, which is not installed", fix=INSTALL) from e
    return mlflow


def _translate(uri: str, e: Exception) -> Exception:
    code = str(getattr(e, "error_code", ""))
    if "RESOURCE_DOES_NOT_EXIST" in code or "NOT_FOUND" in code:
        return NotFoundError(f"{uri}: {e}", hint="check the model name, version or alias (mlflow models list)")
    if isinstance(e, ConnectionError | TimeoutError) or "TEMPORARILY_UNAVAILABLE" in code:
        return TransientError(f"{uri}: {e}")
    return StorageError(f"reading {uri} from MLflow failed: {type(e).__name__}: {e}", hint="check MLFLOW_TRACKING_URI")


class MlflowSource:
    """``models:/`` and ``runs:/`` URIs (see the module docstring)."""

    def __init__(self) -> None:
        self._mlflow = _mlflow()
        self._client = self._mlflow.MlflowClient()
        self._pinned: dict[str, str] = {}
        """uri -> the URI of exactly what :meth:`version` named (an alias resolved to its version)."""

    def version(self, uri: str) -> str | None:
        try:
            if (m := _RUNS.match(uri)) is not None:
                run = self._client.get_run(m["run"])
                self._pinned[uri] = uri
                return f"run:{m['run']}:{run.info.status}:{run.info.end_time}"
            m = _MODELS.match(uri)
            if m is None:
                raise SpecError("model.uri", f"{uri} is not an MLflow model URI", fix="see docs/spec.md")
            name, ref, alias = m["name"], m["ref"], m["alias"]
            if alias is not None:
                mv = self._client.get_model_version_by_alias(name, alias)
            elif ref is not None and ref.isdigit():
                mv = self._client.get_model_version(name, ref)
            else:
                stages = None if ref is None or ref.lower() == "latest" else [ref]
                found = self._client.get_latest_versions(name, stages=stages)
                if not found:
                    raise NotFoundError(f"{uri}: model {name!r} has no version in {ref!r}")
                mv = max(found, key=lambda v: int(v.version))
        except (SpecError, NotFoundError):
            raise
        except Exception as e:
            raise _translate(uri, e) from e
        self._pinned[uri] = f"models:/{name}/{mv.version}"
        return f"model:{name}:{mv.version}:{mv.run_id or ''}"

    def download(self, uri: str, dest: Path, on_progress: ProgressFn | None = None) -> Path:
        if uri not in self._pinned:
            self.version(uri)
        try:
            local = Path(self._mlflow.artifacts.download_artifacts(artifact_uri=self._pinned[uri], dst_path=str(dest)))
        except Exception as e:
            raise _translate(uri, e) from e
        flavor, _ = flavor_of(local)
        if flavor == "python":
            (local / f"{ADAPTER_MODULE}.py").write_text(ADAPTER)
        if on_progress:
            total = sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
            on_progress(total, total)
        return local


def flavor_of(path: Path) -> tuple[str, str | None]:
    """(flavor, entrypoint) to serve the MLflow model in ``path`` with (see the module docstring)."""
    import yaml

    try:
        doc = yaml.safe_load((path / MLMODEL).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(
            "model.uri", f"{path} holds no readable MLmodel file: {e}", fix="point model.uri at an MLflow model"
        ) from e
    flavors = (doc or {}).get("flavors") or {}
    sk = flavors.get("sklearn") or {}
    pickled = str(sk.get("pickled_model") or "")
    pickles = list(path.glob("*.pkl")) + list(path.glob("*.joblib"))
    plain = sk.get("serialization_format", "cloudpickle") in ("pickle", "cloudpickle")
    if plain and pickled.endswith(".pkl") and "/" not in pickled and len(pickles) == 1:
        return "sklearn", None
    onnx = str((flavors.get("onnx") or {}).get("data") or "")
    if onnx.endswith(".onnx") and len(list(path.glob("*.onnx"))) == 1:
        return "onnx", None
    if "python_function" in flavors:
        return "python", ADAPTER_ENTRYPOINT
    raise SpecError(
        "model.uri",
        f"the MLflow model has flavors {sorted(flavors) or 'none'}; deployer serves sklearn, onnx and python_function",
        fix="log the model with mlflow.sklearn, mlflow.onnx or mlflow.pyfunc",
    )


def served_as(spec: Any, path: Path) -> Any:
    """``spec`` with ``model.flavor`` / ``model.entrypoint`` taken from the MLmodel file in ``path``.
    A flavor the spec sets explicitly must agree with it."""
    flavor, entrypoint = flavor_of(path)
    model = spec.model
    if "flavor" in model.model_fields_set and model.flavor != flavor:
        raise SpecError(
            "model.flavor",
            f"is {model.flavor!r}, but the MLflow model at {model.uri} is served as {flavor!r}",
            fix="remove model.flavor: it is read from the MLmodel file",
        )
    return spec.model_copy(update={"model": model.model_copy(update={"flavor": flavor, "entrypoint": entrypoint})})
