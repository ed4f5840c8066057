"""The one request decoder and response encoder of every contract deployer serves.

Every serving path reads a request body into rows with :func:`decode` and writes its answer with
:func:`predictions_body` (or :func:`infer_body` for the Open Inference Protocol): the local
endpoint and the container runtime (:mod:`deployer.serving.app`), and the scripts deployer
generates for the SageMaker scikit-learn container and Azure ML scoring, which embed this module's
source verbatim (:func:`source`). So this module imports nothing but the standard library, has no
``from __future__`` line, and keeps numpy out (values are converted with their own ``tolist``).

Bodies a decoder accepts (each documented by its contract):

* a JSON list of rows: ``[[1.0, 2.0], ...]`` (deployer's own routes);
* ``{"instances": [...]}``: Vertex AI
  (https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements#request_requirements);
* ``{"inputs": [...]}`` as rows, or ``{"data": [...]}`` (Azure ML scoring scripts' convention);
* ``{"inputs": [{"name", "shape", "datatype", "data"}, ...]}``: Open Inference Protocol tensors
  (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/#inference-request-json-object):
  one tensor of shape ``[n, k]`` is ``n`` rows; several tensors of shape ``[n]`` or ``[n, 1]`` are
  named columns, so each row is ``{name: value}`` (ordered by the model's feature names);
* ``text/csv``: one row a line, where SageMaker's contract has it
  (https://docs.aws.amazon.com/sagemaker/latest/dg/cdf-inference.html).
"""

import csv
import io
import json

OIP_TYPES = {bool: "BOOL", int: "INT64", float: "FP64", str: "BYTES"}
"""Open Inference Protocol datatype of a prediction by its Python type (tensor data types table)."""


class BadInput(Exception):
    """The request cannot be served as sent; ``str(e)`` tells the caller what to change."""

    def __init__(self, message, code="bad_input", status=422):
        super().__init__(message)
        self.code = code
        self.status = status


_SHAPES = 'send a JSON list of rows, {"instances": [...]}, {"inputs": [...]} or Open Inference Protocol tensors'


def decode(body, content_type="application/json"):
    """The rows in a request ``body`` (bytes or str) of ``content_type``; never empty."""
    if (content_type or "").split(";")[0].strip().lower() == "text/csv":
        return csv_rows(body)
    if not body:
        raise BadInput("the body is empty; " + _SHAPES, "bad_json", 400)
    try:
        data = json.loads(body)
    except ValueError as e:
        raise BadInput(f"request body is not JSON: {e}", "bad_json", 400) from None
    return rows_of(data)


def rows_of(data):
    """The list of rows in a decoded JSON body (see the module docstring); never empty."""
    if isinstance(data, dict):
        key = next((k for k in ("instances", "inputs", "data") if k in data), None)
        if key is None:
            raise BadInput(_SHAPES, "bad_request", 400)
        data = data[key]
        if key == "inputs" and isinstance(data, list) and data and _is_tensor(data[0]):
            data = tensor_rows(data)
    if not isinstance(data, list):
        raise BadInput(_SHAPES, "bad_request", 400)
    if not data:
        raise BadInput("the request has no rows; send at least one row", "empty", 422)
    return data


def _is_tensor(item):
    return isinstance(item, dict) and "data" in item and "shape" in item


def tensor_rows(tensors):
    """Rows from Open Inference Protocol input tensors (one ``[n, k]`` tensor, or ``[n]`` columns)."""
    columns = []
    for t in tensors:
        if not _is_tensor(t) or not isinstance(t["shape"], list):
            message = "each Open Inference Protocol input needs name, shape, datatype and data"
            raise BadInput(message, "bad_request", 400)
        shape = t["shape"]
        flat = _flatten(t["data"])
        size = 1
        for d in shape:
            size *= d if isinstance(d, int) and d >= 0 else -1
        if size < 0 or size != len(flat):
            raise BadInput(f"input {t.get('name')!r}: shape {shape} does not hold {len(flat)} values", "bad_shape")
        if len(tensors) == 1 and len(shape) == 2:
            k = shape[1]
            return [flat[i * k : (i + 1) * k] for i in range(shape[0])]
        if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
            columns.append((str(t.get("name")), flat))
            continue
        raise BadInput(f"input {t.get('name')!r}: send a [rows, features] tensor or [rows] columns", "bad_shape")
    if len(columns) == 1:
        return [[v] for v in columns[0][1]]
    n = len(columns[0][1])
    if any(len(c) != n for _, c in columns):
        raise BadInput("every input column needs the same number of rows", "ragged")
    return [{name: c[i] for name, c in columns} for i in range(n)]


def _flatten(data):
    out = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def csv_rows(body):
    """Rows of numbers from a CSV body (one row a line, no header)."""
    binary = (bytes, bytearray)  # a tuple: the script also runs on Python 3.7
    text = body.decode("utf-8") if isinstance(body, binary) else str(body)
    rows = []
    for i, line in enumerate(csv.reader(io.StringIO(text))):
        if not line:
            continue
        try:
            rows.append([float(v) for v in line])
        except ValueError:
            raise BadInput(f"CSV line {i + 1} holds a value that is not a number", "not_numeric") from None
    if not rows:
        raise BadInput("the request has no rows; send at least one row", "empty", 422)
    return rows


def plain(predictions):
    """Predictions as JSON-ready Python values (arrays and numpy scalars via their ``tolist``)."""
    tolist = getattr(predictions, "tolist", None)
    return tolist() if tolist is not None else list(predictions)


def predictions_body(predictions, release=None, convert=plain):
    """The answer of deployer's own routes, SageMaker and Vertex AI: ``{"predictions": [...]}``.

    ``convert`` makes the values JSON-ready; a serialiser that writes numpy arrays itself (orjson in
    :mod:`deployer.serving.app`) passes the identity so float32 values keep their shortest form.
    """
    body = {"predictions": convert(predictions)}
    if release:
        body["release"] = release
    return body


_NUMPY_TYPES = {"b1": "BOOL", "i4": "INT32", "i8": "INT64", "u1": "UINT8", "f4": "FP32", "f8": "FP64"}


def infer_body(predictions, model_name, release=None, request_id=None):
    """An Open Inference Protocol inference response: one output tensor ``predictions``."""
    dtype = getattr(predictions, "dtype", None)
    if dtype is not None and getattr(predictions, "ndim", 0) >= 1:
        shape = list(predictions.shape)
        flat = predictions.ravel().tolist()
        datatype = _NUMPY_TYPES.get(dtype.kind + str(dtype.itemsize), "BYTES")
    else:
        values = plain(predictions)
        shape = [len(values)]
        flat = values
        if values and isinstance(values[0], list):
            shape.append(len(values[0]))
            flat = _flatten(values)
        kinds = {type(v) for v in flat}
        mixed = "FP64" if kinds <= {int, float} else "BYTES"
        datatype = OIP_TYPES.get(next(iter(kinds)), "BYTES") if len(kinds) == 1 else mixed
    if datatype == "BYTES":
        flat = [v if isinstance(v, str) else json.dumps(v) for v in flat]
    body = {
        "model_name": model_name,
        "outputs": [{"name": "predictions", "shape": shape, "datatype": datatype, "data": flat}],
    }
    if release:
        body["model_version"] = release
    if request_id is not None:
        body["id"] = request_id
    return body


def source():
    """This module's source, for embedding in a generated script."""
    import inspect
    import sys

    return inspect.getsource(sys.modules[__name__])
