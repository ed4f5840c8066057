"""An in-repo fake of the Vertex AI v1 REST API (and Cloud Monitoring's ListTimeSeries) on 127.0.0.1.

A specification, not a mock. Every request body is parsed with ``google.cloud.aiplatform_v1``'s own types with
unknown fields refused, so a misspelled or misplaced field fails the test; answers are the API's JSON. Each rule
enforced cites the reference page it comes from (REST reference root:
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/). Long-running operations finish ``pending_polls``
requests after they start (the fake's clock: the work completes whether or not anyone polls, and a caller
polling alone sees it pending that many times); they are served at ``/v1/...`` and at ``/ui/...``, where the
GAPIC operations client polls. Prediction runs the model for real: the deployed model's ``artifactUri``
directory is read from the storage emulator and loaded with deployer's own serving code; the prebuilt
scikit-learn container refuses a pickle written by another scikit-learn version, as the real one fails to load
it. Every prediction is written as Cloud Monitoring points, visible only after ``metrics_delay_s``.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.cloud.aiplatform_v1 import types
from google.longrunning import operations_pb2
from google.protobuf import json_format

from . import fake_monitoring

LABEL_RE = re.compile(r"^[a-z0-9_-]{0,64}$")
PREBUILT_SKLEARN = re.compile(
    r"^(us|europe|asia)-docker\.pkg\.dev/vertex-ai/prediction/sklearn-cpu\.(\d+)-(\d+):latest$"
)
MUTABLE_DEPLOYED_MODEL_PATHS = {
    "dedicated_resources.min_replica_count",
    "dedicated_resources.max_replica_count",
    "dedicated_resources.required_replica_count",
    "dedicated_resources.autoscaling_metric_specs",
    "disable_container_logging",
}


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


@dataclass
class PendingOp:
    name: str
    ready_at: int
    """The fake's clock (requests served) at which the work is done, whether anyone polls or not."""
    finish: Callable[[], Any]
    """Applies the change; returns the response message (proto-plus) or raises ApiError (op error)."""
    done: bool = False
    response: Any = None
    error: ApiError | None = None


@dataclass
class VertexFake:
    project: str
    region: str
    models_dir: Path
    storage: Any
    """A google.cloud.storage Client on the emulator (reads artifacts as the serving container would)."""
    pending_polls: int = 3
    metrics_delay_s: float = 1.0
    faults: list[int] = field(default_factory=list)
    """HTTP statuses (429 / 503) answered to the next requests instead of serving them."""
    calls: Counter[str] = field(default_factory=Counter)
    endpoints: dict[str, Any] = field(default_factory=dict)
    models: dict[str, list[Any]] = field(default_factory=dict)
    ops: dict[str, PendingOp] = field(default_factory=dict)
    points: list[fake_monitoring.Point] = field(default_factory=list)
    predictors: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """Requests the fake could not parse or serve (a test fails on a misspelled field through these)."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    tick: int = 0
    _ids: Any = field(default_factory=lambda: iter(range(1000, 10**9)))

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    # -- requests ---------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], body: str) -> tuple[int, Any]:
        with self.lock:
            self.tick += 1
            for op in list(self.ops.values()):
                if not op.done and self.tick >= op.ready_at:
                    self._finish(op)
            if self.faults:
                status = self.faults.pop(0)
                reason = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(status, "INTERNAL")
                raise ApiError(status, reason, "injected")
        m = re.fullmatch(r"/(v1|ui)/(projects/[^/]+/locations/[^/]+(?:/[^/]+/[^/:]+)?/operations/[^/:]+)", path)
        if m and method == "GET":
            self.calls["operations.get"] += 1
            return 200, self.get_operation(m.group(2))
        m = re.fullmatch(r"/v1/projects/([^/]+)/locations/([^/]+)/(endpoints|models)(?:/([^/:]+))?(?::(\w+))?", path)
        if not m or (m.group(1), m.group(2)) != (self.project, self.region):
            raise ApiError(404, "NOT_FOUND", f"no route {method} {path}")
        kind, rid, verb = m.group(3), urllib.parse.unquote(m.group(4) or ""), m.group(5) or ""
        name = f"{self.parent}/{kind}/{rid}"
        self.calls[f"{kind}.{verb or method.lower()}"] += 1
        with self.lock:
            if kind == "endpoints":
                return self.endpoint_call(method, rid, name, verb, query, body)
            return self.model_call(method, rid, verb, query, body)

    def endpoint_call(self, method: str, rid: str, name: str, verb: str, q: dict[str, str], body: str) -> Any:
        if method == "POST" and not rid:
            return 200, self.create_endpoint(types.Endpoint.from_json(body, ignore_unknown_fields=False), q)
        if method == "GET" and not rid:
            out = types.ListEndpointsResponse(endpoints=list(self.endpoints.values()))
            return 200, json.loads(types.ListEndpointsResponse.to_json(out))
        ep = self.endpoints.get(rid)
        if verb == "predict":
            req = types.PredictRequest.from_json(body, ignore_unknown_fields=False)
            return self.predict(self._require(ep, name), req)
        if method == "GET":
            return 200, _json(self._require(ep, name))
        if method == "DELETE":
            return 200, self.delete_endpoint(self._require(ep, name))
        if method == "PATCH":
            req = types.Endpoint.from_json(body, ignore_unknown_fields=False)
            return 200, self.update_endpoint(self._require(ep, name), req, q.get("updateMask", ""))
        ep = self._require(ep, name)
        if verb == "deployModel":
            req = types.DeployModelRequest.from_json(body, ignore_unknown_fields=False)
            return 200, self.deploy_model(ep, req)
        if verb == "undeployModel":
            req = types.UndeployModelRequest.from_json(body, ignore_unknown_fields=False)
            return 200, self.undeploy_model(ep, req)
        if verb == "mutateDeployedModel":
            req = types.MutateDeployedModelRequest.from_json(body, ignore_unknown_fields=False)
            return 200, self.mutate_deployed_model(ep, req)
        raise ApiError(404, "NOT_FOUND", f"no method {verb}")

    def model_call(self, method: str, rid: str, verb: str, q: dict[str, str], body: str) -> Any:
        if verb == "upload" and not rid:  # POST .../models:upload
            return 200, self.upload_model(types.UploadModelRequest.from_json(body, ignore_unknown_fields=False))
        model_id, _, version = rid.partition("@")
        versions = self.models.get(model_id)
        if not versions:
            raise ApiError(404, "NOT_FOUND", f"Model {self.parent}/models/{rid} not found")
        if verb == "listVersions":
            return 200, json.loads(types.ListModelVersionsResponse.to_json(
                types.ListModelVersionsResponse(models=versions)))
        chosen = [v for v in versions if v.version_id == version] if version else [versions[-1]]
        if not chosen:
            raise ApiError(404, "NOT_FOUND", f"Model version {rid} not found")
        model = chosen[0]
        if method == "GET":
            return 200, _json(model)
        if method == "PATCH":
            req = types.Model.from_json(body, ignore_unknown_fields=False)
            mask = q.get("updateMask", "")
            if mask != "labels":  # this fake supports the one mask deployer sends
                raise ApiError(400, "INVALID_ARGUMENT", f"unsupported update mask {mask!r}")
            _check_labels(dict(req.labels))
            model.labels.clear()
            model.labels.update(dict(req.labels))
            return 200, _json(model)
        if method == "DELETE":
            return 200, self.delete_model(model_id)
        raise ApiError(404, "NOT_FOUND", f"no method {verb}")

    def _require(self, ep: Any, name: str) -> Any:
        if ep is None:
            raise ApiError(404, "NOT_FOUND", f"Endpoint {name} not found")
        return ep

    # -- operations -------------------------------------------------------------------------
    def start(self, resource: str, finish: Callable[[], Any]) -> dict[str, Any]:
        """A long-running operation, done ``pending_polls`` requests from now (so at least that many polls)."""
        name = f"{resource}/operations/{next(self._ids)}"
        self.ops[name] = PendingOp(name, self.tick + self.pending_polls, finish)
        return {"name": name, "done": False}

    def _finish(self, op: PendingOp) -> None:
        op.done = True
        try:
            op.response = op.finish()
        except ApiError as e:
            op.error = e

    def get_operation(self, name: str) -> dict[str, Any]:
        op = self.ops.get(name)
        if op is None:
            raise ApiError(404, "NOT_FOUND", f"Operation {name} not found")
        pb = operations_pb2.Operation(name=name, done=op.done)
        if op.error is not None:
            pb.error.code = _GRPC_CODE.get(op.error.status, 2)
            pb.error.message = op.error.message
        elif op.done and op.response is not None:
            pb.response.Pack(type(op.response).pb(op.response))
        out: dict[str, Any] = json.loads(json_format.MessageToJson(pb))
        return out

    # -- endpoints ----------------------------------------------------------------------------
    def create_endpoint(self, ep: Any, q: dict[str, str]) -> dict[str, Any]:
        # endpoint_id: "[a-z0-9-]", at most 63, first character a letter, last a letter or digit
        # (projects.locations.endpoints/create, query parameter endpointId)
        eid = q.get("endpointId") or str(next(self._ids))
        if not re.fullmatch(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,8}", eid):
            raise ApiError(400, "INVALID_ARGUMENT", f"invalid endpoint_id {eid!r}")
        name = f"{self.parent}/endpoints/{eid}"
        if eid in self.endpoints or any(o.name.startswith(name + "/") and not o.done for o in self.ops.values()):
            raise ApiError(409, "ALREADY_EXISTS", f"Endpoint {name} already exists")
        if not ep.display_name:  # Endpoint.displayName is Required (projects.locations.endpoints#Endpoint)
            raise ApiError(400, "INVALID_ARGUMENT", "endpoint.display_name is required")
        _check_labels(dict(ep.labels))
        ep.name = name

        def finish() -> Any:
            self.endpoints[eid] = ep
            return ep

        return self.start(name, finish)

    def delete_endpoint(self, ep: Any) -> dict[str, Any]:
        # "Before you delete an endpoint, you must undeploy all models that are deployed to it"
        # (https://cloud.google.com/vertex-ai/docs/general/deployment#undeploy-model)
        if ep.deployed_models:
            raise ApiError(400, "FAILED_PRECONDITION", f"Endpoint {ep.name} has deployed models")
        eid = ep.name.rsplit("/", 1)[1]

        def finish() -> Any:
            self.endpoints.pop(eid, None)
            return types.DeleteOperationMetadata()

        return self.start(ep.name, finish)

    def _check_split(self, ep: Any, split: dict[str, int], extra: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        # traffic_split: values add up to 100 (or the map is empty); keys are DeployedModel ids
        # (projects.locations.endpoints#Endpoint.FIELDS.traffic_split)
        if split and sum(split.values()) != 100:
            raise ApiError(400, "INVALID_ARGUMENT", f"traffic split must add up to 100, got {split}")
        known = {d.id for d in ep.deployed_models} | set(extra)
        unknown = sorted(set(split) - known)
        if unknown:
            raise ApiError(400, "INVALID_ARGUMENT", f"traffic split names undeployed ids {unknown}")

    def update_endpoint(self, ep: Any, req: Any, mask: str) -> dict[str, Any]:
        if mask != "trafficSplit" and mask != "traffic_split":
            raise ApiError(400, "INVALID_ARGUMENT", f"unsupported update mask {mask!r}")
        split = dict(req.traffic_split)
        self._check_split(ep, split)
        ep.traffic_split.clear()
        ep.traffic_split.update(split)
        return _json(ep)

    def deploy_model(self, ep: Any, req: Any) -> dict[str, Any]:
        dm = req.deployed_model
        model_id, _, version = dm.model.rsplit("/", 1)[1].partition("@")
        versions = self.models.get(model_id, [])
        model = next((v for v in versions if v.version_id == (version or versions[-1].version_id)), None) \
            if versions else None
        if model is None:  # DeployedModel.model must name an existing Model (projects.locations.endpoints/deployModel)
            raise ApiError(404, "NOT_FOUND", f"Model {dm.model} not found")
        res = dm.dedicated_resources
        # min_replica_count >= 1; max_replica_count >= min (machine_resources DedicatedResources)
        if not dm.dedicated_resources.machine_spec.machine_type or res.min_replica_count < 1:
            raise ApiError(400, "INVALID_ARGUMENT", "dedicated_resources needs machine_spec.machine_type and "
                                                    "min_replica_count >= 1")
        if res.max_replica_count and res.max_replica_count < res.min_replica_count:
            raise ApiError(400, "INVALID_ARGUMENT", "max_replica_count must be >= min_replica_count")
        names = [m.metric_name for m in res.autoscaling_metric_specs]
        if len(names) != len(set(names)):  # "At most one entry is allowed per metric"
            raise ApiError(400, "INVALID_ARGUMENT", "duplicate autoscaling metric")
        split = dict(req.traffic_split)
        self._check_split(ep, split, {"0"})
        if dm.id and any(d.id == dm.id for d in ep.deployed_models):
            raise ApiError(409, "ALREADY_EXISTS", f"DeployedModel {dm.id} exists")

        def finish() -> Any:
            self._load(model)  # the container must load the model, or the deployment fails
            dm.id = dm.id or str(next(self._ids))
            dm.model = f"{self.parent}/models/{model_id}"
            dm.model_version_id = model.version_id
            dm.create_time = dt_now()
            ep.deployed_models.append(dm)
            if split:
                ep.traffic_split.clear()
                ep.traffic_split.update({(dm.id if k == "0" else k): v for k, v in split.items() if v})
            return types.DeployModelResponse(deployed_model=dm)

        return self.start(ep.name, finish)

    def undeploy_model(self, ep: Any, req: Any) -> dict[str, Any]:
        dm = next((d for d in ep.deployed_models if d.id == req.deployed_model_id), None)
        if dm is None:
            raise ApiError(404, "NOT_FOUND", f"DeployedModel {req.deployed_model_id} not found")
        split = dict(req.traffic_split) or dict(ep.traffic_split)
        # "A DeployedModel will be successfully undeployed only if it doesn't have any traffic assigned
        # to it when this method executes, or if this field unassigns any traffic to it."
        # (projects.locations.endpoints/undeployModel, trafficSplit)
        if split.get(dm.id, 0) > 0 and len(ep.deployed_models) > 1:
            raise ApiError(400, "FAILED_PRECONDITION", f"DeployedModel {dm.id} still has traffic")
        split.pop(dm.id, None)
        self._check_split(ep, split)

        def finish() -> Any:
            ep.deployed_models[:] = [d for d in ep.deployed_models if d.id != dm.id]
            ep.traffic_split.clear()
            if ep.deployed_models:  # undeploying the last model leaves the split empty
                ep.traffic_split.update({k: v for k, v in split.items() if v})
            self.predictors.pop(dm.id, None)
            return types.UndeployModelResponse()

        return self.start(ep.name, finish)

    def mutate_deployed_model(self, ep: Any, req: Any) -> dict[str, Any]:
        dm = next((d for d in ep.deployed_models if d.id == req.deployed_model.id), None)
        if dm is None:
            raise ApiError(404, "NOT_FOUND", f"DeployedModel {req.deployed_model.id} not found")
        paths = set(req.update_mask.paths)
        # only replica counts, autoscaling specs and container logging are mutable
        # (projects.locations.endpoints/mutateDeployedModel, deployedModel)
        if not paths or paths - MUTABLE_DEPLOYED_MODEL_PATHS:
            fixed = sorted(paths - MUTABLE_DEPLOYED_MODEL_PATHS)
            raise ApiError(400, "INVALID_ARGUMENT", f"fields not mutable: {fixed}")
        new = req.deployed_model.dedicated_resources
        if new.min_replica_count < 1 or (new.max_replica_count and new.max_replica_count < new.min_replica_count):
            raise ApiError(400, "INVALID_ARGUMENT", "replica counts: min >= 1 and max >= min")

        def finish() -> Any:
            res = dm.dedicated_resources
            res.min_replica_count = new.min_replica_count
            res.max_replica_count = new.max_replica_count
            del res.autoscaling_metric_specs[:]
            res.autoscaling_metric_specs.extend(new.autoscaling_metric_specs)
            return types.MutateDeployedModelResponse(deployed_model=dm)

        return self.start(ep.name, finish)

    # -- models -------------------------------------------------------------------------------
    def upload_model(self, req: Any) -> dict[str, Any]:
        model = req.model
        if not model.display_name:  # Model.displayName is Required (projects.locations.models#Model)
            raise ApiError(400, "INVALID_ARGUMENT", "model.display_name is required")
        if not model.container_spec.image_uri:  # containerSpec.imageUri is Required (ModelContainerSpec)
            raise ApiError(400, "INVALID_ARGUMENT", "model.container_spec.image_uri is required")
        _check_labels(dict(model.labels))
        if req.parent_model and req.model_id:  # parentModel uploads a version: no new id
            raise ApiError(400, "INVALID_ARGUMENT", "model_id cannot be set with parent_model")
        if req.parent_model:
            model_id = req.parent_model.rsplit("/", 1)[1]
            if model_id not in self.models:
                raise ApiError(404, "NOT_FOUND", f"parent model {req.parent_model} not found")
        else:
            model_id = req.model_id or str(next(self._ids))
            # modelId: at most 63 of [a-z0-9_-], not starting with a digit or hyphen (models/upload)
            if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,62}", model_id):
                raise ApiError(400, "INVALID_ARGUMENT", f"invalid model_id {model_id!r}")
            if model_id in self.models:
                raise ApiError(409, "ALREADY_EXISTS", f"Model {model_id} already exists")
            self.models[model_id] = []
        name = f"{self.parent}/models/{model_id}"

        def finish() -> Any:
            versions = self.models[model_id]
            model.name = name
            model.version_id = str(len(versions) + 1)
            model.create_time = dt_now()
            versions.append(model)
            return types.UploadModelResponse(model=name, model_version_id=model.version_id)

        return self.start(name, finish)

    def delete_model(self, model_id: str) -> dict[str, Any]:
        name = f"{self.parent}/models/{model_id}"
        # a Model that is deployed cannot be deleted: undeploy it first (projects.locations.models/delete)
        deployed = [d.id for e in self.endpoints.values() for d in e.deployed_models if d.model == name]
        if deployed:
            raise ApiError(400, "FAILED_PRECONDITION", f"Model {name} is deployed as {deployed}")

        def finish() -> Any:
            self.models.pop(model_id, None)
            return types.DeleteOperationMetadata()

        return self.start(name, finish)

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, ep: Any, req: Any) -> tuple[int, Any]:
        split = {k: v for k, v in ep.traffic_split.items() if v}
        if not split:
            raise ApiError(400, "FAILED_PRECONDITION", f"Endpoint {ep.name} has no traffic split")
        ids, weights = zip(*sorted(split.items()), strict=True)
        dm_id = random.choices(ids, weights=weights)[0]
        dm = next(d for d in ep.deployed_models if d.id == dm_id)
        instances = [json_format.MessageToDict(v) for v in types.PredictRequest.pb(req).instances]
        start = time.perf_counter()
        try:
            predictor = self.predictors.get(dm_id) or self._load(self._model_of(dm))
            self.predictors[dm_id] = predictor
            out = predictor.predict(instances)
            preds = out.tolist() if hasattr(out, "tolist") else list(out)
            ok, status, body = True, 200, None
        except Exception as exc:  # the container answers 400 with its error (prebuilt sklearn server)
            ok, status, body = False, 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                    "message": f"Prediction failed: {exc}"}}
        ms = (time.perf_counter() - start) * 1000
        eid = ep.name.rsplit("/", 1)[1]
        self.points.append(fake_monitoring.Point(time.time(), eid, dm_id, ok, ms))
        if not ok:
            return status, body
        model = self._model_of(dm)
        resp = types.PredictResponse(deployed_model_id=dm_id, model=dm.model,
                                     model_version_id=model.version_id, model_display_name=model.display_name)
        resp.predictions.extend(preds)
        return 200, _json(resp)

    def _model_of(self, dm: Any) -> Any:
        model_id = dm.model.rsplit("/", 1)[1]
        return next(v for v in self.models[model_id] if v.version_id == dm.model_version_id)

    def _load(self, model: Any) -> Any:
        """Load the model as its container would: from ``artifactUri``, with deployer's serving code."""
        from deployer.serving.loader import load

        uri = model.artifact_uri
        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        dest = self.models_dir / f"{abs(hash(uri))}"
        dest.mkdir(parents=True, exist_ok=True)
        blobs = list(self.storage.bucket(bucket).list_blobs(prefix=prefix.rstrip("/") + "/"))
        if not blobs:
            raise ApiError(400, "FAILED_PRECONDITION", f"Model server never became ready: {uri} is empty")
        for b in blobs:
            target = dest / b.name[len(prefix.rstrip("/")) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            b.download_to_filename(str(target))
        image = model.container_spec.image_uri
        m = PREBUILT_SKLEARN.match(image)
        if m:
            # the prebuilt container loads model.joblib / model.pkl from the artifact directory
            # (https://cloud.google.com/vertex-ai/docs/training/exporting-model-artifacts#scikit-learn)
            files = [p for p in dest.iterdir() if p.name in ("model.joblib", "model.pkl")]
            if len(files) != 1:
                raise ApiError(400, "FAILED_PRECONDITION", "Model server never became ready: no model.joblib")
            predictor = load(files[0], "sklearn")
            written = getattr(predictor.model, "__getstate__", dict)().get("_sklearn_version", "")
            if ".".join(written.split(".")[:2]) != f"{m.group(2)}.{m.group(3)}":
                raise ApiError(400, "FAILED_PRECONDITION", f"Model server never became ready: a model pickled with "
                               f"scikit-learn {written} does not load in {image}")
            return predictor
        env = {e.name: e.value for e in model.container_spec.env}
        return load(dest, env.get("DEPLOYER_FLAVOR", "sklearn"), env.get("DEPLOYER_ENTRYPOINT"))


_GRPC_CODE = {"INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "FAILED_PRECONDITION": 9,
              "RESOURCE_EXHAUSTED": 8, "UNAVAILABLE": 14, "INTERNAL": 13}


def dt_now() -> Any:
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


def _json(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(type(message).to_json(message))
    return out


def _check_labels(labels: dict[str, str]) -> None:
    # "Label keys and values can be no longer than 64 characters (Unicode codepoints), can only contain
    # lowercase letters, numeric characters, underscores and dashes" (projects.locations.models#Model, labels)
    for k, v in labels.items():
        if not k or not LABEL_RE.fullmatch(k) or not LABEL_RE.fullmatch(v):
            raise ApiError(400, "INVALID_ARGUMENT", f"invalid label {k!r}: {v!r}")
