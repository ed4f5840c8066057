"""Load a release from its extracted artifact directory, by flavor.

Every loader returns a :class:`Predictor`: an object with ``predict(rows) -> predictions``. The
sklearn and onnx predictors also carry an input ``contract`` (:mod:`deployer.serving.inputs`) and
``batchable = True``: they receive the checked 2-D array, possibly several requests' rows at once.
Any other object (python flavor) receives the decoded JSON list as the client sent it, and is
batched only when it declares ``batchable = True`` (or the spec turns batching on).

Flavor libraries are imported lazily, so serving an ONNX model never imports scikit-learn and vice
versa; :func:`preload` imports them ahead of time
(the supervisor does it once before forking its workers).

* ``sklearn``: the single ``*.joblib`` / ``*.pkl`` file in the directory, loaded with joblib;
  rows become a numpy array (records given as objects are ordered by ``feature_names_in_``).
  When the artifact carries a verified compiled graph (``serving.compile: onnx``, see
  :mod:`deployer.serving.compile`) that graph is served with onnxruntime instead.
* ``onnx``: the single ``*.onnx`` file, run with onnxruntime on the first input as float32.
* ``python``: ``entrypoint`` ``module:Class`` imported with the directory first on ``sys.path``;
  ``Class.load(path)`` when it exists, else ``Class()``; the object must have ``predict(rows)``.
* ``container``: not loadable in-process (:class:`~deployer.errors.CapabilityError`).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

from deployer.errors import CapabilityError, DeployerError
from deployer.serving.inputs import PASSTHROUGH, Contract
from deployer.serving.settings import read_settings

FLAVOR_MODULES: dict[str, tuple[str, ...]] = {
    "sklearn": ("numpy", "joblib", "sklearn.base"),
    "onnx": ("numpy", "onnxruntime"),
    "python": ("numpy",),
}
"""Modules worth importing before the first model of each flavor is loaded."""


class ModelLoadError(DeployerError):
    """The artifact could not be loaded as the declared flavor."""


class Predictor(Protocol):
    def predict(self, rows: Any) -> Any: ...


def contract_of(model: Predictor) -> Contract:
    """The input checks of a loaded model (the JSON rows as they are, for python models)."""
    contract = getattr(model, "contract", None)
    return contract if isinstance(contract, Contract) else PASSTHROUGH


def preload(flavors: set[str] | list[str]) -> None:
    """Import the libraries of ``flavors`` now (missing optional ones are skipped: load reports them)."""
    for flavor in sorted(set(flavors)):
        for mod in FLAVOR_MODULES.get(flavor, ()):
            try:
                importlib.import_module(mod)
            except ImportError:
                break


_PRELOAD_LOCK = threading.Lock()
_PRELOADED: dict[tuple[str, int, int], Any] = {}
"""sklearn models unpickled ahead of time (by the supervisor, before forking), by file identity."""


def _identity(file: Path) -> tuple[str, int, int]:
    st = file.stat()
    return (str(file.resolve()), st.st_mtime_ns, st.st_size)


def preload_model(path: Path | str, flavor: str) -> None:
    """Unpickle an sklearn model now so forked workers inherit it (copy-on-write) instead of loading it.

    Also imports exactly the modules the pickle needs. Only for ``sklearn``: an onnxruntime session
    or user code may start threads, which must not cross a fork. Errors are left for :func:`load`.
    """
    if flavor != "sklearn":
        preload([flavor])
        return
    try:
        import joblib

        file = _one_file(Path(path), ("*.joblib", "*.pkl"), flavor)
        key = _identity(file)
        with _PRELOAD_LOCK:  # two early preloads (CLI + supervisor) unpickle once
            if key not in _PRELOADED:
                _PRELOADED[key] = joblib.load(file)
    except Exception:
        return


def forget_preloaded(keep: set[str]) -> None:
    """Drop preloaded models whose artifact path is not under one of ``keep``."""
    for key in list(_PRELOADED):
        if not any(key[0] == k or key[0].startswith(k.rstrip("/") + "/") for k in keep):
            del _PRELOADED[key]


def _one_file(path: Path, patterns: tuple[str, ...], flavor: str) -> Path:
    if path.is_file():
        return path
    found = sorted(p for pat in patterns for p in path.glob(pat))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ModelLoadError(
            f"flavor {flavor!r} needs exactly one {' or '.join(patterns)} file in the artifact, found {names}"
        )
    return found[0]


class SklearnPredictor:
    """A joblib-pickled estimator (or pipeline).

    Its ``contract`` is learnt at load time by probing the model: the fitted width
    (``n_features_in_``), whether it takes strings (a pipeline with encoders) and whether it takes
    missing values; requests outside it are the caller's error (4xx) before the model runs.

    Linear models (LogisticRegression, LinearRegression, Ridge, SGD, LinearSVC ...) get a fast path:
    ``X @ coef_.T + intercept_`` in numpy, skipping scikit-learn's per-call validation (~30x faster
    for one row). Like a compiled graph it obeys :mod:`deployer.serving.probe`'s rule: it serves only
    after it reproduced ``model.predict`` on the probe rows at load time, and only for finite float
    rows of the fitted width. ``DEPLOYER_SKLEARN_FAST_PATH=0`` turns it off.
    """

    batchable = True

    def __init__(self, model: Any) -> None:
        import numpy as np

        self.model = model
        self._np = np
        self.contract = _probe_contract(model, np)
        self._linear = _linear_fast_path(model, np)

    def predict(self, rows: Any) -> Any:
        np = self._np
        if isinstance(rows, list):  # called directly (not through the app): check like the app does
            rows = self.contract.parse(rows)
        fast = self._linear
        if fast is not None and rows.dtype == np.float64 and rows.shape[1] == fast.width and np.isfinite(rows).all():
            return fast(rows)
        return self.model.predict(rows)


def _fails(predict: Any, x: Any) -> bool:
    try:
        predict(x)
    except Exception:
        return True
    return False


def _probe_contract(model: Any, np: Any) -> Contract:
    """What ``model`` accepts, learnt by calling it on a zero row, a string row and a NaN row."""
    names = getattr(model, "feature_names_in_", None)
    names = tuple(str(n) for n in names) if names is not None else None
    width = getattr(model, "n_features_in_", None)
    if not isinstance(width, int | np.integer) or width <= 0:
        return Contract(numeric=True, names=names)
    width = int(width)
    if _fails(model.predict, np.zeros((1, width))):
        return Contract(numeric=False, width=width, names=names, allow_nan=True)
    numeric = _fails(model.predict, np.full((1, width), "x", dtype=object))
    allow_nan = not _fails(model.predict, np.full((1, width), np.nan))
    return Contract(numeric=numeric, width=width, names=names, allow_nan=allow_nan)


class _Linear:
    """``predict`` of a fitted linear model as numpy arithmetic (sklearn's own formula)."""

    def __init__(self, model: Any, np: Any) -> None:
        self.np = np
        self.coef_t = np.ascontiguousarray(np.atleast_2d(model.coef_).T, dtype=np.float64)
        self.intercept = np.asarray(model.intercept_, dtype=np.float64)
        self.width = self.coef_t.shape[0]
        self.classes = getattr(model, "classes_", None)

    def __call__(self, x: Any) -> Any:
        scores = x @ self.coef_t + self.intercept
        if self.classes is None:  # a regressor
            return scores.ravel() if scores.shape[1] == 1 else scores
        if scores.shape[1] == 1:
            return self.classes.take((scores[:, 0] > 0).astype(self.np.intp))
        return self.classes.take(scores.argmax(axis=1))


def _linear_fast_path(model: Any, np: Any) -> _Linear | None:
    if os.environ.get("DEPLOYER_SKLEARN_FAST_PATH", "1") == "0":
        return None
    try:
        from sklearn.linear_model._base import LinearClassifierMixin, LinearModel
    except ImportError:
        return None
    if not isinstance(model, LinearClassifierMixin | LinearModel):
        return None
    coef = getattr(model, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype.kind != "f" or not hasattr(model, "intercept_"):
        return None
    from deployer.serving.probe import mismatch, probe_rows

    try:
        fast = _Linear(model, np)
        probe = probe_rows(fast.width)
        return fast if mismatch(model.predict(probe), fast(probe)) is None else None
    except Exception:
        return None


class OnnxPredictor:
    """An ONNX graph run with onnxruntime on its first input, as float32 (float64 for a double input).

    Its contract: numeric rows of the input's width (when the graph fixes it), no nulls (a float
    tensor has none). For a graph compiled from a scikit-learn model, ``contract``, ``squeeze``
    (flatten an ``(n, 1)`` output to ``(n,)``, as scikit-learn returns it) and ``classes`` (answer
    ``classes[argmax(probabilities)]``, scikit-learn's own rule, instead of the graph's label) are
    given by the compile step.
    """

    batchable = True

    def __init__(
        self, path: Path, contract: Contract | None = None, squeeze: bool = False, classes: list[Any] | None = None
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelLoadError(
                "flavor 'onnx' needs onnxruntime in the serving environment",
                hint="pip install 'mldeployer[onnx]'",
            ) from e
        import numpy as np

        self._np = np
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # one thread per call: the worker runs calls side by side
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input = first.name
        width = first.shape[1] if len(first.shape) == 2 and isinstance(first.shape[1], int) else None
        self.contract = contract or Contract(numeric=True, width=width)
        self.squeeze = squeeze
        self.classes = np.asarray(classes) if classes is not None else None
        self.dtype = np.float64 if first.type == "tensor(double)" else np.float32

    def predict(self, rows: Any) -> Any:
        if isinstance(rows, list):
            rows = self.contract.parse(rows)
        outputs = self.session.run(None, {self.input: self._np.asarray(rows, dtype=self.dtype)})
        if self.classes is not None:
            return self.classes.take(outputs[1].argmax(axis=1))
        out = outputs[0]
        if self.squeeze and out.ndim == 2 and out.shape[1] == 1:
            return out.ravel()
        return out


def load(path: Path, flavor: str, entrypoint: str | None = None) -> Predictor:
    """Load the model in the extracted artifact ``path`` as ``flavor``.

    Blocking. Raises :class:`ModelLoadError` (with the cause chained) when the artifact does not
    match the flavor or the model fails to load, :class:`CapabilityError` for ``container``.
    """
    path = Path(path)
    if flavor == "container":
        raise CapabilityError(
            "flavor 'container' cannot be served in-process by the local provider",
            hint="serve container images with a cloud provider (aws, gcp, azure)",
        )
    if flavor == "sklearn":
        compiled = _compiled(path)
        if compiled is not None:
            return compiled
        file = _one_file(path, ("*.joblib", "*.pkl"), flavor)
        try:
            model = _PRELOADED.get(_identity(file))
            if model is None:
                import joblib

                model = joblib.load(file)
            return SklearnPredictor(model)
        except Exception as e:
            raise ModelLoadError(f"cannot load {file.name} with joblib: {type(e).__name__}: {e}") from e
    if flavor == "onnx":
        file = _one_file(path, ("*.onnx",), flavor)
        try:
            return OnnxPredictor(file)
        except ModelLoadError:
            raise
        except Exception as e:
            raise ModelLoadError(f"cannot load {file.name} with onnxruntime: {type(e).__name__}: {e}") from e
    if flavor == "python":
        return _load_python(path, entrypoint)
    raise ModelLoadError(f"unknown flavor {flavor!r}; use sklearn, onnx, python or container")


def _compiled(path: Path) -> Predictor | None:
    """The verified compiled graph packaged with an sklearn model, when there is one."""
    if not path.is_dir():
        return None
    settings = read_settings(path)
    if settings.compiled is None:
        return None
    inputs = settings.inputs
    contract = Contract(
        numeric=True,
        width=inputs.get("width"),
        names=tuple(inputs["names"]) if inputs.get("names") else None,
        allow_nan=bool(inputs.get("allow_nan", False)),
    )
    try:
        return OnnxPredictor(
            path / settings.compiled, contract, squeeze=bool(inputs.get("squeeze")), classes=inputs.get("classes")
        )
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"cannot load the compiled {settings.compiled}: {type(e).__name__}: {e}") from e


def _load_python(path: Path, entrypoint: str | None) -> Predictor:
    if not entrypoint or ":" not in entrypoint:
        raise ModelLoadError("flavor 'python' needs entrypoint 'module:Class'")
    module_name, _, class_name = entrypoint.partition(":")
    base = str(path if path.is_dir() else path.parent)
    if base in sys.path:
        sys.path.remove(base)
    sys.path.insert(0, base)
    # Two releases may ship a module of the same name: drop a cached one from another artifact.
    top = module_name.split(".")[0]
    for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if file and not file.startswith(base + "/"):
            del sys.modules[name]
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError) as e:
        raise ModelLoadError(f"cannot import {entrypoint} from the artifact: {type(e).__name__}: {e}") from e
    try:
        loader = getattr(cls, "load", None)
        obj = loader(path) if callable(loader) else cls()
    except Exception as e:
        raise ModelLoadError(f"{entrypoint} failed to load: {type(e).__name__}: {e}") from e
    if not callable(getattr(obj, "predict", None)):
        raise ModelLoadError(f"{entrypoint} returned {type(obj).__name__}, which has no predict(rows) method")
    return obj
