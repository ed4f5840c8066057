"""Packaging-time serving files: the manifest of ``spec.serving`` and, for ``compile: onnx``, the graph.

:func:`serving_files` is what :func:`deployer.artifacts.package` adds to an artifact. For
``compile: onnx`` it loads the scikit-learn model, converts it with skl2onnx, runs the graph with
onnxruntime on :func:`~deployer.serving.probe.probe_rows` and keeps it only when it reproduces
``model.predict`` there (the rule every substitute for ``predict`` obeys). Otherwise the artifact
serves the model itself and the manifest and the returned note say why. skl2onnx and onnxruntime
are imported only here, only when asked for (``pip install 'mldeployer[compile]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from deployer.serving.probe import mismatch, probe_rows
from deployer.serving.settings import MANIFEST
from deployer.spec import Serving

GRAPH = "model.onnx"
"""File name of the compiled graph inside the artifact."""


def serving_files(src: Path, serving: Serving, flavor: str = "sklearn") -> tuple[dict[str, bytes], list[str]]:
    """Files to add to the artifact of ``src`` (name -> bytes) and notes for the user.

    Nothing when ``serving`` is the default, so such artifacts are unchanged. Blocking (a
    conversion can take seconds for large ensembles).
    """
    if serving == Serving():
        return {}, []
    files: dict[str, bytes] = {}
    notes: list[str] = []
    compiled: dict[str, Any] = {"requested": serving.compile, "file": None, "reason": None, "inputs": {}}
    if serving.compile == "onnx":
        graph, inputs, reason = _compile(src, flavor)
        if graph is not None:
            files[GRAPH] = graph
            compiled.update(file=GRAPH, inputs=inputs)
            notes.append(f"serving.compile: the ONNX graph reproduced model.predict on {inputs['probes']} probe rows")
        else:
            compiled["reason"] = reason
            notes.append(f"serving.compile: serving the scikit-learn model itself: {reason}")
    manifest = {
        "batching": serving.batching.model_dump(mode="json"),
        "timeout_s": serving.timeout_s,
        "max_body_mb": serving.max_body_mb,
        "compile": compiled,
    }
    files[MANIFEST] = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    return files, notes


def _model_file(src: Path) -> Path | None:
    if src.is_file():
        return src
    found = sorted(p for pat in ("*.joblib", "*.pkl") for p in src.glob(pat))
    return found[0] if len(found) == 1 else None


def _compile(src: Path, flavor: str) -> tuple[bytes | None, dict[str, Any], str]:
    """(graph bytes, input contract, "") when the graph reproduces the model, else (None, {}, why)."""
    if flavor != "sklearn":
        return None, {}, f"only sklearn models compile, not {flavor!r}"
    file = _model_file(src)
    if file is None:
        return None, {}, "no single *.joblib or *.pkl model file to convert"
    try:
        import joblib
        import numpy as np
        import onnxruntime as ort
        from skl2onnx import to_onnx
    except ImportError as e:
        return None, {}, f"{e.name} is not installed (pip install 'mldeployer[compile]')"
    try:
        model = joblib.load(file)
    except Exception as e:
        return None, {}, f"cannot load {file.name}: {type(e).__name__}: {e}"
    width = getattr(model, "n_features_in_", None)
    if not isinstance(width, int | np.integer):
        return None, {}, "the model has no n_features_in_ (fit it on a 2-D array)"
    width = int(width)
    probe = probe_rows(width)  # what clients send (float64); the graph gets it as float32, as served
    try:
        expected = model.predict(probe)
    except Exception as e:
        return None, {}, f"model.predict fails on numeric probe rows ({type(e).__name__}: {e})"
    classes = getattr(model, "classes_", None)
    options = {id(model): {"zipmap": False}} if classes is not None else None
    why = ""
    # A float32 graph is faster, a double one exact more often; a classifier's label is taken either from
    # the graph's label or, as scikit-learn does, as the first class of highest probability (ties differ).
    for dtype in (np.float32, np.float64):
        try:
            graph = to_onnx(model, probe[:1].astype(dtype), options=options).SerializeToString()
            session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
            outputs = session.run(None, {session.get_inputs()[0].name: probe.astype(dtype)})
        except Exception as e:
            return None, {}, f"skl2onnx cannot convert {type(model).__name__}: {type(e).__name__}: {e}"
        got = outputs[0]
        squeeze = got.ndim == 2 and got.shape[1] == 1 and np.asarray(expected).ndim == 1
        why = mismatch(expected, got.ravel() if squeeze else got, rtol=1e-9) or ""
        from_proba = False
        if why and classes is not None and len(outputs) > 1 and outputs[1].ndim == 2:
            from_proba = mismatch(expected, classes.take(outputs[1].argmax(axis=1))) is None
            why = "" if from_proba else why
        if not why:
            break
    if why:
        return None, {}, f"the ONNX graph does not reproduce model.predict: {why}"
    names = getattr(model, "feature_names_in_", None)
    inputs = {
        "width": width,
        "names": [str(n) for n in names] if names is not None else None,
        "allow_nan": False,  # the graph's handling of missing values is not verified: nulls are refused
        "squeeze": squeeze,
        "classes": classes.tolist() if from_proba and classes is not None else None,
        "probes": int(probe.shape[0]),
    }
    return graph, inputs, ""
