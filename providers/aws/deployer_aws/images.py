"""Prebuilt SageMaker scikit-learn serving images and the inference bundle they run.

The account table is the ``inference`` registry of ``image_uri_config/sklearn.json`` in the SageMaker
Python SDK (``sagemaker-core/src/sagemaker/core/image_uri_config/sklearn.json``): the ECR account that
hosts ``sagemaker-scikit-learn`` in each region, the same for every version. The image is
``{account}.dkr.ecr.{region}.{suffix}/sagemaker-scikit-learn:{version}-cpu-py3``.

:data:`SKLEARN_CONTAINERS` lists the versions that registry offers with the Python, scikit-learn and
numpy each image ships, read from the tagged ``requirements.txt`` / ``docker/<version>`` Dockerfiles of
aws/sagemaker-scikit-learn-container (tags v0.23-1, v1.0-1, v1.2-1, v1.4-2-py312). A pickled
scikit-learn model loads reliably only under the scikit-learn minor version that pickled it and a
numpy of the same major version (numpy 2 pickles name ``numpy._core``, which numpy 1 lacks), so
:func:`pick_sklearn` matches on those and on a Python no older than the model's.

The container (aws/sagemaker-scikit-learn-container) unpacks ``ModelDataUrl`` into
``/opt/ml/model`` and imports the script named by ``SAGEMAKER_PROGRAM`` from the source bundle at
``SAGEMAKER_SUBMIT_DIRECTORY`` (an ``s3://`` tar.gz it downloads at start). The model artifact is
content-addressed and never repacked, so the script travels as its own small, deterministic,
content-addressed bundle next to it (``.../sha256/<digest>/sourcedir.tar.gz``). Because the
container downloads that bundle itself, the sklearn flavor cannot run with network isolation.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

from deployer.serving import codec

SKLEARN_ACCOUNTS: dict[str, str] = {
    "af-south-1": "510948584623",
    "ap-east-1": "651117190479",
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "720646828776",
    "ap-south-2": "628508329040",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941",
    "ap-southeast-4": "106583098589",
    "ca-central-1": "341280168497",
    "ca-west-1": "190319476487",
    "cn-north-1": "450853457545",
    "cn-northwest-1": "451049120500",
    "eu-central-1": "492215442770",
    "eu-central-2": "680994064768",
    "eu-north-1": "662702820516",
    "eu-south-1": "978288397137",
    "eu-south-2": "104374241257",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "il-central-1": "898809789911",
    "me-central-1": "272398656194",
    "me-south-1": "801668240914",
    "sa-east-1": "737474898029",
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-gov-east-1": "237065988967",
    "us-gov-west-1": "414596584902",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}

SKLEARN_CONTAINERS: dict[str, dict[str, str]] = {
    "1.4-2-py312": {"python": "3.12", "scikit-learn": "1.4.2", "numpy": "2.1.0"},
    "1.2-1": {"python": "3.8.13", "scikit-learn": "1.2.1", "numpy": "1.24.1"},
    "1.0-1": {"python": "3.8.13", "scikit-learn": "1.0.2", "numpy": "1.19.2"},
    "0.23-1": {"python": "3.7.10", "scikit-learn": "0.23.2", "numpy": "1.19.2"},
}
"""Prebuilt scikit-learn serving images, newest first, with what each ships."""

PROGRAM = "inference.py"
BUNDLE = "sourcedir.tar.gz"

_HEADER = '''\
"""deployer's handler for the SageMaker scikit-learn container (generated; do not edit).

Bodies are decoded and answers encoded by deployer's serving codec (below, verbatim), the same code
deployer's own container runtime and the local endpoint use.
"""
'''

_HANDLER = """

import os as _os

import joblib as _joblib
import numpy as _np

_SUFFIXES = (".joblib", ".pkl", ".pickle")


def model_fn(model_dir):
    found = []
    for root, _dirs, files in _os.walk(model_dir):
        found += [_os.path.join(root, f) for f in sorted(files) if f.endswith(_SUFFIXES)]
    if not found:
        raise FileNotFoundError(f"no .joblib/.pkl model under {model_dir}")
    preferred = [p for p in found if _os.path.basename(p).startswith("model.")]
    return _joblib.load((preferred or found)[0])


def input_fn(body, content_type):
    return _np.asarray(decode(body, content_type))


def predict_fn(data, model):
    return model.predict(data)


def output_fn(prediction, accept):
    return json.dumps(predictions_body(prediction, _os.environ.get("DEPLOYER_RELEASE"))), "application/json"
"""

INFERENCE_SCRIPT = _HEADER + codec.source() + _HANDLER
"""The handler: deployer's serving codec (:mod:`deployer.serving.codec`) and the four SageMaker hooks."""


def _parts(version: str, n: int) -> tuple[int, ...]:
    out: list[int] = []
    for piece in version.split(".")[:n]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def can_load(container: str, runtime: dict[str, str]) -> bool:
    """Whether the prebuilt ``container`` can unpickle a model made with ``runtime`` (manifest fields)."""
    ships = SKLEARN_CONTAINERS.get(container)
    if ships is None:
        return False
    if "scikit-learn" in runtime and _parts(runtime["scikit-learn"], 2) != _parts(ships["scikit-learn"], 2):
        return False
    if "numpy" in runtime and _parts(runtime["numpy"], 1) != _parts(ships["numpy"], 1):
        return False
    return "python" not in runtime or _parts(ships["python"], 2) >= _parts(runtime["python"], 2)


def pick_sklearn(runtime: dict[str, str]) -> str | None:
    """The newest prebuilt container that can load a model made with ``runtime``, or None."""
    return next((v for v in SKLEARN_CONTAINERS if can_load(v, runtime)), None)


def describe_runtime(runtime: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(runtime.items()))


def sklearn_image(region: str, version: str) -> str | None:
    """The prebuilt image URI for ``region``, or None where there is none."""
    account = SKLEARN_ACCOUNTS.get(region)
    if account is None:
        return None
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{suffix}/sagemaker-scikit-learn:{version}-cpu-py3"


def inference_bundle() -> tuple[bytes, str]:
    """The deterministic ``sourcedir.tar.gz`` holding the handler, and its sha256."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = INFERENCE_SCRIPT.encode()
        info = tarfile.TarInfo(PROGRAM)
        info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
        tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    blob = out.getvalue()
    return blob, hashlib.sha256(blob).hexdigest()


def sklearn_environment(bundle_uri: str, region: str, release: str) -> dict[str, str]:
    """What the scikit-learn container needs to find and run the handler (and the release it serves)."""
    return {
        "SAGEMAKER_PROGRAM": PROGRAM,
        "SAGEMAKER_SUBMIT_DIRECTORY": bundle_uri,
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": region,
        "DEPLOYER_RELEASE": release,
    }
