"""The only module that imports Google's libraries.

Clients are created lazily (constructing a provider imports no SDK and makes no network call):

* Vertex AI through the GAPIC clients of ``google.cloud.aiplatform_v1`` (ModelService, EndpointService,
  PredictionService) on the REST transport, at the regional host ``{region}-aiplatform.googleapis.com``
  (https://cloud.google.com/vertex-ai/docs/reference/rest#service-endpoint). Requests are built from
  plain dicts and answers are returned as plain dicts, so no SDK type leaves this module.
* Cloud Monitoring through ``google.cloud.monitoring_v3`` (gRPC: the library has no REST transport).
* Cloud Storage through ``google.cloud.storage`` (``STORAGE_EMULATOR_HOST`` is honoured by the library).

Credentials: Application Default Credentials, or ``credentials_file`` (a service-account key); an
``http://`` API endpoint (a local emulator; Google's APIs are HTTPS only) gets anonymous credentials.
Nothing here stores credentials.

``aiplatform_v1`` does not retry throttling or 5xx by itself (its methods are wrapped with no default
retry), so every call passes :func:`retry`: a few quick tries inside a short deadline; the core's own
retry (:mod:`deployer.retry`) takes over after that with :class:`~deployer.errors.TransientError`.
"""

from __future__ import annotations

import threading
from typing import Any

try:
    from google.api_core import exceptions as api_exceptions
    from google.api_core import retry as api_retry
    from google.api_core.client_options import ClientOptions
    from google.auth import exceptions as auth_exceptions
    from google.auth.credentials import AnonymousCredentials
except ImportError as exc:  # pragma: no cover - exercised only without the Google libraries
    raise ImportError("the gcp provider needs google-cloud-aiplatform: pip install mldeployer-gcp") from exc

GoogleAPIError = api_exceptions.GoogleAPIError
GoogleAPICallError = api_exceptions.GoogleAPICallError
RetryError = api_exceptions.RetryError
DefaultCredentialsError = auth_exceptions.DefaultCredentialsError
TransportError = auth_exceptions.TransportError
NotFound = api_exceptions.NotFound

RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 8.0
RETRY_DEADLINE_S = 30.0
"""SDK-level retry of 429 / 5xx: short, so it shares the engine's deadline instead of multiplying it."""

TRANSIENT_TYPES = (
    api_exceptions.TooManyRequests,
    api_exceptions.ServiceUnavailable,
    api_exceptions.InternalServerError,
    api_exceptions.GatewayTimeout,
    api_exceptions.DeadlineExceeded,
    api_exceptions.BadGateway,
)


def retry() -> Any:
    """The ``retry=`` passed to every Vertex call (read at call time, so tests can shorten it)."""
    return api_retry.Retry(
        predicate=api_retry.if_exception_type(*TRANSIENT_TYPES),
        initial=RETRY_INITIAL_S,
        maximum=RETRY_MAX_S,
        multiplier=2.0,
        timeout=RETRY_DEADLINE_S,
    )


def storage_retry() -> Any:
    """Storage's own retry (it also matches the resumable-media layer's errors, so chunk uploads recover)."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_delay(initial=RETRY_INITIAL_S, maximum=RETRY_MAX_S).with_timeout(RETRY_DEADLINE_S)


def as_dict(message: Any) -> dict[str, Any]:
    """A proto-plus message (or a raw protobuf) as a dict with snake_case keys."""
    from google.protobuf import json_format

    pb = type(message).pb(message) if hasattr(type(message), "pb") else message
    out: dict[str, Any] = json_format.MessageToDict(pb, preserving_proto_field_name=True)
    return out


class Clients:
    """Lazy, thread-safe clients for one project and region."""

    def __init__(
        self,
        project: str | None,
        region: str | None,
        credentials_file: str | None = None,
        api_endpoint: str | None = None,
        monitoring_endpoint: str | None = None,
    ) -> None:
        self.project = project or ""
        self.region = region or ""
        self._credentials_file = credentials_file
        self._api_endpoint = api_endpoint
        self._monitoring_endpoint = monitoring_endpoint
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def api_endpoint(self) -> str:
        return self._api_endpoint or f"{self.region}-aiplatform.googleapis.com"

    @property
    def base_url(self) -> str:
        host = self.api_endpoint
        return host if host.startswith(("http://", "https://")) else f"https://{host}"

    def _credentials(self, endpoint: str | None) -> Any:
        if endpoint and endpoint.startswith("http://"):
            return AnonymousCredentials()
        if self._credentials_file:
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_file(
                self._credentials_file, scopes=["https://www.googleapis.com/auth/cloud-platform"]
            )
        return None  # Application Default Credentials

    def _get(self, key: str, make: Any) -> Any:
        with self._lock:
            c = self._clients.get(key)
            if c is None:
                c = self._clients[key] = make()
            return c

    def vertex(self, service: str) -> Any:
        """The GAPIC client for ``service``: "model", "endpoint" or "prediction"."""

        def make() -> Any:
            cls: Any
            if service == "model":
                from google.cloud.aiplatform_v1.services.model_service import ModelServiceClient

                cls = ModelServiceClient
            elif service == "endpoint":
                from google.cloud.aiplatform_v1.services.endpoint_service import EndpointServiceClient

                cls = EndpointServiceClient
            else:
                from google.cloud.aiplatform_v1.services.prediction_service import PredictionServiceClient

                cls = PredictionServiceClient
            return cls(
                transport="rest",
                credentials=self._credentials(self.api_endpoint),
                client_options=ClientOptions(api_endpoint=self.api_endpoint),
            )

        return self._get(service, make)

    def monitoring(self) -> Any:
        def make() -> Any:
            from google.cloud.monitoring_v3.services.metric_service import MetricServiceClient

            endpoint = self._monitoring_endpoint
            if endpoint and endpoint.startswith("http://"):
                import grpc
                from google.cloud.monitoring_v3.services.metric_service.transports.grpc import (
                    MetricServiceGrpcTransport,
                )

                channel = grpc.insecure_channel(endpoint.removeprefix("http://"))
                return MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))
            opts = ClientOptions(api_endpoint=endpoint) if endpoint else None
            return MetricServiceClient(credentials=self._credentials(endpoint), client_options=opts)

        return self._get("monitoring", make)

    def storage(self) -> Any:
        def make() -> Any:
            from google.cloud.storage import Client

            return Client(project=self.project or None, credentials=self._credentials(None))

        return self._get("storage", make)


class Vertex:
    """The Vertex AI calls the provider makes, with dicts in and out. Each returns at once; an LRO
    is returned as its operation name, polled with :meth:`get_operation`."""

    def __init__(self, clients: Clients) -> None:
        self.c = clients

    def _call(self, service: str, method: str, request: dict[str, Any], **kw: Any) -> Any:
        client = self.c.vertex(service)
        return getattr(client, method)(request=request, retry=retry(), **kw)

    # -- endpoints ----------------------------------------------------------------------------
    def get_endpoint(self, name: str) -> dict[str, Any] | None:
        try:
            return as_dict(self._call("endpoint", "get_endpoint", {"name": name}))
        except api_exceptions.NotFound:
            return None

    def create_endpoint(self, endpoint_id: str, body: dict[str, Any]) -> str:
        op = self._call(
            "endpoint", "create_endpoint", {"parent": self.c.parent, "endpoint": body, "endpoint_id": endpoint_id}
        )
        return str(op.operation.name)

    def delete_endpoint(self, name: str) -> str:
        return str(self._call("endpoint", "delete_endpoint", {"name": name}).operation.name)

    def deploy_model(
        self, endpoint: str, deployed_model: dict[str, Any], traffic: dict[str, int], timeout: float | None = None
    ) -> str:
        req = {"endpoint": endpoint, "deployed_model": deployed_model, "traffic_split": traffic}
        return str(self._call("endpoint", "deploy_model", req, timeout=timeout).operation.name)

    def undeploy_model(self, endpoint: str, deployed_model_id: str, traffic: dict[str, int]) -> str:
        req = {"endpoint": endpoint, "deployed_model_id": deployed_model_id, "traffic_split": traffic}
        return str(self._call("endpoint", "undeploy_model", req).operation.name)

    def mutate_deployed_model(self, endpoint: str, deployed_model: dict[str, Any], paths: list[str]) -> str:
        req = {"endpoint": endpoint, "deployed_model": deployed_model, "update_mask": {"paths": paths}}
        return str(self._call("endpoint", "mutate_deployed_model", req).operation.name)

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> dict[str, Any]:
        req = {"endpoint": {"name": endpoint, "traffic_split": traffic}, "update_mask": {"paths": ["traffic_split"]}}
        return as_dict(self._call("endpoint", "update_endpoint", req))

    # -- models -------------------------------------------------------------------------------
    def upload_model(self, model_id: str, body: dict[str, Any], parent_model: str | None) -> str:
        req: dict[str, Any] = {"parent": self.c.parent, "model": body}
        if parent_model:
            req["parent_model"] = parent_model
        else:
            req["model_id"] = model_id
        return str(self._call("model", "upload_model", req).operation.name)

    def list_model_versions(self, name: str) -> list[dict[str, Any]]:
        try:
            pager = self._call("model", "list_model_versions", {"name": name})
            return [as_dict(m) for m in pager]
        except api_exceptions.NotFound:
            return []

    def set_model_labels(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        req = {"model": {"name": name, "labels": labels}, "update_mask": {"paths": ["labels"]}}
        return as_dict(self._call("model", "update_model", req))

    def delete_model(self, name: str) -> str | None:
        try:
            return str(self._call("model", "delete_model", {"name": name}).operation.name)
        except api_exceptions.NotFound:
            return None

    # -- operations and prediction ------------------------------------------------------------
    def get_operation(self, name: str) -> dict[str, Any]:
        """``{"done": bool, "error": {...}?, "response": {...}?}`` of a long-running operation."""
        from google.longrunning import operations_pb2

        service = "model" if "/models/" in name else "endpoint"
        client = self.c.vertex(service)
        op = client.get_operation(request=operations_pb2.GetOperationRequest(name=name), retry=retry())
        out: dict[str, Any] = {"name": op.name, "done": bool(op.done)}
        if op.HasField("error"):
            out["error"] = {"code": op.error.code, "message": op.error.message}
        return out

    def predict(self, endpoint: str, instances: list[Any]) -> dict[str, Any]:
        from google.cloud.aiplatform_v1.types import PredictRequest

        request = PredictRequest(endpoint=endpoint)
        request.instances.extend(instances)  # the constructor does not take nested lists as Values
        resp = self.c.vertex("prediction").predict(request=request, retry=retry())
        return as_dict(resp)


def list_time_series(clients: Clients, flt: str, start: float, end: float, aggregation: dict[str, Any]) -> list[Any]:
    """Cloud Monitoring ``timeSeries.list`` as dicts (snake_case)."""
    from google.cloud.monitoring_v3 import types

    request = types.ListTimeSeriesRequest(
        name=f"projects/{clients.project}",
        filter=flt,
        interval=types.TimeInterval(
            start_time={"seconds": int(start), "nanos": int((start % 1) * 1e9)},
            end_time={"seconds": int(end), "nanos": int((end % 1) * 1e9)},
        ),
        aggregation=types.Aggregation(**aggregation) if aggregation else None,
        view=types.ListTimeSeriesRequest.TimeSeriesView.FULL,
    )
    pager = clients.monitoring().list_time_series(request=request, retry=retry())
    return [as_dict(ts) for ts in pager]
