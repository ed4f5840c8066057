"""The data plane of the SageMaker fake: InvokeEndpoint runs the model, CloudWatch sees it late.

* InvokeEndpoint picks the variant SageMaker would (the ``X-Amzn-SageMaker-Target-Variant`` header,
  else at random by the variants' current weights:
  https://docs.aws.amazon.com/sagemaker/latest/dg/model-ab-testing.html) and runs the model the way the
  prebuilt scikit-learn container does: it downloads the handler bundle named by
  ``SAGEMAKER_SUBMIT_DIRECTORY`` and the ``ModelDataUrl`` artifact from (moto's) S3, unpacks them,
  imports ``SAGEMAKER_PROGRAM`` and calls ``model_fn`` / ``input_fn`` / ``predict_fn`` / ``output_fn``
  (https://sagemaker.readthedocs.io/en/stable/frameworks/sklearn/using_sklearn.html#deploy-a-scikit-learn-model)
  with the model's ``Environment`` set. A handler that raises answers ``ModelError`` with
  ``OriginalStatusCode`` 500, as InvokeEndpoint documents
  (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html).
* An image made by ``deployer build`` (registered in :attr:`Runtime.images` with its build context, as
  if pushed to ECR) runs the way SageMaker runs any inference image
  (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html): its entrypoint
  with ``serve``, the image's ``ENV`` and the model's ``Environment``, the ``ModelDataUrl`` artifact
  unpacked where ``/opt/ml/model`` would be, as a process on 127.0.0.1 (log file, stopped by pid on
  ``close``) that the invocation is POSTed to at ``/invocations`` once ``/ping`` answers 200. Other
  images cannot run here: they answer ``{"predictions": [0]}``.
* Every invocation becomes CloudWatch datapoints in ``AWS/SageMaker`` (Invocations,
  Invocation5XXErrors, Invocation4XXErrors, ModelLatency in microseconds; dimensions EndpointName and
  VariantName: https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html), timestamped
  on the fake's clock and readable only ``metrics_delay_s`` after the end of their minute.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import importlib.util
import io
import json
import os
import random
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from moto.s3.models import s3_backends

from deployer.testing.processes import post, run_image, stop_process


class SystemTime:
    def now(self) -> float:
        return time.time()


@dataclass
class Runtime:
    """Model execution and metric publication; part of :class:`deployer_aws.testing.sagemaker.SageMakerFake`."""

    clock: Any = field(default_factory=SystemTime)
    """Anything with ``now()`` in seconds; wall time is ``epoch + clock.now()``."""
    epoch: float = 0.0
    metrics_delay_s: float = 120.0
    model_errors: dict[str, float] = field(default_factory=dict)
    """Model name -> fraction of its invocations that fail with a 500 (deterministic: every n-th)."""
    pending: list[tuple[float, str, str, bool, float]] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=lambda: random.Random(11))
    _dirs: dict[str, Path] = field(default_factory=dict)
    _modules: dict[tuple[str, str], Any] = field(default_factory=dict)
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    images: dict[str, Path] = field(default_factory=dict)
    """Image URI -> the build context ``deployer build`` wrote for it: these images run for real."""
    _containers: dict[tuple[str, str], tuple[subprocess.Popen[bytes], int]] = field(default_factory=dict)

    def wall(self) -> float:
        return self.epoch + self.clock.now()

    def utcnow(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.wall(), dt.UTC)

    def close(self) -> None:
        for proc, _port in self._containers.values():
            stop_process(proc)
        self._containers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
        self._tmp = None
        self._dirs.clear()
        self._modules.clear()

    # -- invocation -------------------------------------------------------------------------
    def pick_variant(self, variants: list[dict[str, Any]], target: str | None) -> dict[str, Any] | None:
        if target:
            return next((v for v in variants if v["VariantName"] == target), None)
        weights = [float(v.get("CurrentWeight") or 0.0) for v in variants]
        if sum(weights) <= 0:
            return None
        return self._rng.choices(variants, weights=weights)[0]

    def invoke(self, account: str, model: Any, body: bytes, content_type: str, accept: str) -> tuple[int, str, bytes]:
        """Run the model's container handler; (status, content type, body)."""
        name = model.model_name
        self.served[name] = self.served.get(name, 0) + 1
        share = self.model_errors.get(name, 0.0)
        if share > 0 and self.served[name] % max(1, round(1 / share)) == 0:
            return 500, "text/plain", b"injected model failure"
        container = model.primary_container or {}
        env = dict(container.get("Environment") or {})
        if "SAGEMAKER_SUBMIT_DIRECTORY" not in env:
            if container.get("Image") in self.images:
                return self._invoke_image(account, name, container, body, content_type)
            return 200, "application/json", json.dumps({"predictions": [0]}).encode()
        handler = self._handler(account, env["SAGEMAKER_SUBMIT_DIRECTORY"], env["SAGEMAKER_PROGRAM"])
        model_dir = self._unpack(account, container["ModelDataUrl"])
        try:
            with _environ(env):
                loaded = handler.model_fn(str(model_dir))
                data = handler.input_fn(body, content_type)
                prediction = handler.predict_fn(data, loaded)
                out, out_type = handler.output_fn(prediction, accept)
        except Exception as exc:  # the container answers 500 with the handler's error
            return 500, "text/plain", f"{type(exc).__name__}: {exc}".encode()
        return 200, out_type, out.encode() if isinstance(out, str) else out

    def _invoke_image(
        self, account: str, name: str, container: dict[str, Any], body: bytes, content_type: str
    ) -> tuple[int, str, bytes]:
        key = (name, container["Image"])
        if key not in self._containers:
            env = dict(container.get("Environment") or {})
            if container.get("ModelDataUrl"):  # unpacked where /opt/ml/model would be
                env["DEPLOYER_MODEL_DIR"] = str(self._unpack(account, container["ModelDataUrl"]))
            log = self._root() / f"container-{len(self._containers)}.log"
            context = self.images[container["Image"]]
            self._containers[key] = run_image(context, env, ("serve",), log, "/ping", "SAGEMAKER_BIND_TO_PORT")
        port = self._containers[key][1]
        return post(f"http://127.0.0.1:{port}/invocations", body, content_type)

    def _root(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sagemaker-fake-")
        return Path(self._tmp.name)

    def _unpack(self, account: str, uri: str) -> Path:
        found = self._dirs.get(uri)
        if found is None:
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            obj = s3_backends[account]["global"].get_object(bucket, key)
            if obj is None:
                raise FileNotFoundError(uri)
            found = self._root() / f"d{len(self._dirs)}"
            with tarfile.open(fileobj=io.BytesIO(obj.value), mode="r:gz") as tar:
                tar.extractall(found, filter="data")
            self._dirs[uri] = found
        return found

    def _handler(self, account: str, bundle: str, program: str) -> Any:
        key = (bundle, program)
        if key not in self._modules:
            src = self._unpack(account, bundle) / program
            spec = importlib.util.spec_from_file_location(f"sagemaker_fake_{len(self._modules)}", src)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._modules[key] = module
        return self._modules[key]

    # -- metrics ----------------------------------------------------------------------------
    def record(self, endpoint: str, variant: str, status: int, latency_ms: float) -> None:
        self.pending.append((self.wall(), endpoint, variant, status >= 500, latency_ms))

    def publish(self, cloudwatch: Any) -> None:
        """Move the datapoints whose minute ended ``metrics_delay_s`` ago into CloudWatch."""
        horizon = self.wall() - self.metrics_delay_s
        ready = [p for p in self.pending if (p[0] // 60 + 1) * 60 <= horizon]
        self.pending = [p for p in self.pending if p not in ready]
        for at, endpoint, variant, failed, latency_ms in ready:
            dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
            ts = dt.datetime.fromtimestamp(at, dt.UTC).replace(tzinfo=None)  # moto compares naive UTC
            cloudwatch.put_metric_data(
                "AWS/SageMaker",
                [
                    {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": ts, "Value": 1, "Unit": "Count"},
                    {
                        "MetricName": "Invocation5XXErrors",
                        "Dimensions": dims,
                        "Timestamp": ts,
                        "Value": 1 if failed else 0,
                        "Unit": "Count",
                    },
                    {
                        "MetricName": "Invocation4XXErrors",
                        "Dimensions": dims,
                        "Timestamp": ts,
                        "Value": 0,
                        "Unit": "Count",
                    },
                    {
                        "MetricName": "ModelLatency",
                        "Dimensions": dims,
                        "Timestamp": ts,
                        "Value": latency_ms * 1000.0,
                        "Unit": "Microseconds",
                    },
                ],
            )


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    with mock.patch.dict(os.environ, env):
        yield


def model_error(status: int, message: bytes, endpoint_arn: str) -> tuple[int, dict[str, str], str]:
    """InvokeEndpoint's answer when the container fails: HTTP 424 ModelError carrying its status."""
    body = {
        "__type": "ModelError",
        "message": f'Received server error ({status}) from primary with message "{message.decode(errors="replace")}".',
        "OriginalStatusCode": status,
        "OriginalMessage": message.decode(errors="replace"),
        "LogStreamArn": endpoint_arn.replace(":endpoint/", ":log-group/"),
    }
    return 424, {"Content-Type": "application/x-amz-json-1.1", "status": "424"}, json.dumps(body)


def decode_body(raw: Any) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        try:
            return raw.encode()
        except UnicodeEncodeError:
            return base64.b64decode(raw)
    return bytes(raw or b"")
