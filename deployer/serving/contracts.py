"""The container runtime: one model served under whichever cloud's container contract the environment names.

``python -m deployer.serving`` (the entrypoint of images made by :mod:`deployer.containers`) reads its
environment, picks a :class:`ServingContract`, finds and loads the model, and serves it with the same
:class:`~deployer.serving.app.ServingApp` as the local endpoint: deployer's own routes, the Open
Inference Protocol routes and the contract's own routes all answer, with one decoder and one
encoder (:mod:`deployer.serving.codec`).

Contracts, chosen in this order:

* **Vertex AI** when any ``AIP_*`` variable is set
  (https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements): listen on
  ``AIP_HTTP_PORT`` (default 8080), answer health checks on ``AIP_HEALTH_ROUTE`` (200 only once the
  model is loaded) and predictions on ``AIP_PREDICT_ROUTE`` (``{"instances": [...]}`` ->
  ``{"predictions": [...]}``); the model is copied from ``AIP_STORAGE_URI`` at start (``gs://`` with
  google-cloud-storage, or a local path / ``file://``).
* **Azure ML** when ``AZUREML_MODEL_DIR`` is set
  (https://learn.microsoft.com/azure/machine-learning/how-to-deploy-custom-container): the model is
  mounted under ``AZUREML_MODEL_DIR``; the deployment's environment names the routes, and this
  runtime answers liveness ``/``, readiness ``/ready`` and scoring ``/score`` on port ``DEPLOYER_PORT``
  (default 5001, the port of Azure ML's own inference server).
* **SageMaker** when any ``SAGEMAKER_*`` variable is set or the container is started as ``serve``
  (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html): port 8080
  (``SAGEMAKER_BIND_TO_PORT`` when set, as in inference pipelines), ``GET /ping`` and
  ``POST /invocations``, the model unpacked by SageMaker into ``/opt/ml/model``.
* **deployer** otherwise: port ``DEPLOYER_PORT`` (default 8080).

Every contract also reads ``DEPLOYER_FLAVOR`` (sklearn, onnx, python; guessed from the files when
unset), ``DEPLOYER_ENTRYPOINT`` (python flavor), ``DEPLOYER_RELEASE`` (the release id answered in
``X-Deployer-Release``; default ``model``), ``DEPLOYER_MODEL_NAME`` (the Open Inference Protocol model
name; default ``model``), ``DEPLOYER_HOST`` (default ``0.0.0.0``) and ``DEPLOYER_MODEL_DIR`` (a model
directory that overrides the contract's). A model directory holding deployer's ``model.tar.gz`` is
unpacked first; with no model where the contract puts it, the model built into the image
(``DEPLOYER_BUILTIN_MODEL``) is served.
"""

from __future__ import annotations

import os
import signal
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.scratch import scratch
from deployer.serving.loader import ModelLoadError

ARCHIVE = "model.tar.gz"


@dataclass(frozen=True)
class ServingContract:
    """How one cloud runs a serving container: port, extra routes and where the model is."""

    name: str
    port: int
    model_dir: str | None = None
    """Where the platform puts the model (None: nowhere; the built-in model is served)."""
    aliases: dict[str, str] = field(default_factory=dict)
    """The contract's routes -> the app's ('/predict', '/health', '/ready')."""
    storage_uri: str | None = None
    """A model location to copy at start (Vertex AI's ``AIP_STORAGE_URI``)."""


def _port(value: str | None, default: int, variable: str) -> int:
    try:
        port = int(value) if value else default
    except ValueError:
        raise ValueError(f"{variable}={value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{variable}={value!r} is not a port number")
    return port


def from_env(env: Mapping[str, str], argv: Sequence[str] = ()) -> ServingContract:
    """The contract the environment ``env`` (and the container's arguments ``argv``) asks for."""
    if any(k.startswith("AIP_") for k in env):
        aliases = {
            env.get("AIP_HEALTH_ROUTE") or "/health": "/ready",
            env.get("AIP_PREDICT_ROUTE") or "/predict": "/predict",
        }
        return ServingContract(
            "vertex",
            _port(env.get("AIP_HTTP_PORT"), 8080, "AIP_HTTP_PORT"),
            aliases={k: v for k, v in aliases.items() if k != v},
            storage_uri=env.get("AIP_STORAGE_URI") or None,
        )
    if env.get("AZUREML_MODEL_DIR"):
        return ServingContract(
            "azureml",
            _port(env.get("DEPLOYER_PORT"), 5001, "DEPLOYER_PORT"),
            model_dir=env["AZUREML_MODEL_DIR"],
            aliases={"/": "/health", "/score": "/predict"},
        )
    if "serve" in argv or any(k.startswith("SAGEMAKER_") for k in env):
        port = _port(env.get("SAGEMAKER_BIND_TO_PORT"), 8080, "SAGEMAKER_BIND_TO_PORT")
        return ServingContract("sagemaker", port, model_dir="/opt/ml/model")
    return ServingContract("deployer", _port(env.get("DEPLOYER_PORT"), 8080, "DEPLOYER_PORT"))


def fetch_storage(uri: str, dest: Path) -> Path:
    """The directory of ``uri`` on local disk: a local path as it is, ``gs://`` copied into ``dest`` through
    the gcp package's source (``deployer.sources`` entry point ``gs``)."""
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if not uri.startswith("gs://"):
        return Path(uri)
    from deployer.errors import SpecError
    from deployer.sources import source_for

    try:
        source = source_for("gs")  # the gcp provider package reads Cloud Storage; the core imports no SDK
    except SpecError as e:
        raise ModelLoadError(
            f"AIP_STORAGE_URI is {uri} but nothing installed in the image reads gs:// ({e})",
            hint="build the image with mldeployer-gcp in its requirements",
        ) from e
    return Path(source.download_prefix(uri, dest))  # type: ignore[attr-defined]


def model_path(contract: ServingContract, env: Mapping[str, str], work: Path) -> Path:
    """The directory holding the model's files (unpacked into ``work`` when it is deployer's archive)."""
    chosen: Path | None = None
    if env.get("DEPLOYER_MODEL_DIR"):
        chosen = Path(env["DEPLOYER_MODEL_DIR"])
    elif contract.storage_uri:
        chosen = fetch_storage(contract.storage_uri, work / "storage")
    elif contract.model_dir and _has_files(Path(contract.model_dir)):
        chosen = Path(contract.model_dir)
    elif env.get("DEPLOYER_BUILTIN_MODEL"):
        chosen = Path(env["DEPLOYER_BUILTIN_MODEL"])
    if chosen is None or not _has_files(chosen):
        where = chosen or contract.model_dir or "DEPLOYER_MODEL_DIR"
        raise ModelLoadError(
            f"no model files in {where} ({contract.name} contract)",
            hint="mount the model there, set DEPLOYER_MODEL_DIR, or build the image with the model in it",
        )
    archive = _archive(chosen)
    return chosen if archive is None else unpack(archive, work / "model")


def unpack(archive: Path, dest: Path) -> Path:
    """Extract deployer's artifact into ``dest``: regular files and directories only, all inside ``dest``.

    tarfile's ``data`` filter does this where the interpreter has it (3.11.4+); older ones (Debian
    bookworm's 3.11.2, the prebuilt cloud images) get the same checks here.
    """
    with tarfile.open(archive, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
            return dest
        root = dest.resolve()
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
                raise ModelLoadError(f"{archive.name} holds {member.name!r}, which is not a file inside the model")
        tar.extractall(dest)
    return dest


def _has_files(path: Path) -> bool:
    return path.is_dir() and any(p.is_file() for p in path.rglob("*"))


def _archive(path: Path) -> Path | None:
    found = sorted(path.rglob(ARCHIVE))
    return found[0] if found else None


def flavor_of(path: Path, env: Mapping[str, str]) -> str:
    """``DEPLOYER_FLAVOR``, or the flavor the files in ``path`` imply."""
    flavor = env.get("DEPLOYER_FLAVOR")
    if flavor:
        return flavor
    if env.get("DEPLOYER_ENTRYPOINT"):
        return "python"
    if any(path.rglob("*.onnx")) and not any(path.rglob("*.joblib")) and not any(path.rglob("*.pkl")):
        return "onnx"
    return "sklearn"


def build_app(contract: ServingContract, env: Mapping[str, str], work: Path) -> Any:
    """The serving app with the model loaded as the one live release."""
    from deployer.serving.app import ServingApp
    from deployer.serving.loader import load
    from deployer.serving.routing import Routing
    from deployer.serving.settings import read_settings

    path = model_path(contract, env, work)
    flavor = flavor_of(path, env)
    release = env.get("DEPLOYER_RELEASE") or "model"
    model = load(path, flavor, env.get("DEPLOYER_ENTRYPOINT") or None)
    routing = Routing({release: model}, {release: 100}, settings={release: read_settings(path)})
    name = env.get("DEPLOYER_MODEL_NAME") or "model"
    print(f"deployer: serving release {release} ({flavor}) under the {contract.name} contract", file=sys.stderr)
    return ServingApp(routing, model_name=name, aliases=contract.aliases)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM; temporary copies of the model are removed on the way out."""
    import uvicorn

    env = dict(os.environ)
    args = list(sys.argv[1:] if argv is None else argv)
    contract = from_env(env, args)
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default action that would end
    # the process before the scratch directory is removed, so a SIGTERM (at any moment) unwinds instead.
    signal.signal(signal.SIGTERM, _unwind)
    with scratch("runtime") as work:
        app = build_app(contract, env, work)
        host = env.get("DEPLOYER_HOST") or "0.0.0.0"
        print(f"deployer: listening on {host}:{contract.port}", file=sys.stderr)
        uvicorn.run(app, host=host, port=contract.port, lifespan="off", access_log=False, log_level="warning")
    return 0


def _unwind(signum: int, frame: Any) -> None:
    raise SystemExit(0)
