"""The only module that imports the Azure SDKs (azure-core, azure-identity, azure-ai-ml,
azure-storage-blob, azure-mgmt-monitor, azure-monitor-query).

Clients are created lazily: constructing a provider makes no network call and imports nothing from
here until the first call. Credentials come from ``DefaultAzureCredential`` (environment, workload
identity, managed identity, the Azure CLI ...); nothing here stores them.

Two settings route the provider somewhere other than public Azure, the way ``AWS_ENDPOINT_URL`` does
for boto3:

* ``DEPLOYER_AZURE_ENDPOINT_URL``: every Azure Resource Manager, Azure Monitor and scoring request is
  sent to this base URL instead (a proxy, an emulator, a recording server). The request keeps its
  ``https://`` URL everywhere the SDK sees it (bearer tokens need https); only the wire is redirected,
  and the original host travels in ``X-Forwarded-Host``.
* ``AZURE_STORAGE_CONNECTION_STRING``: the artifact store connects with it (Azurite, a shared key)
  instead of ``https://<storage_account>.blob.core.windows.net`` with the Azure credential.
* ``DEPLOYER_AZURE_TOKEN``: a bearer token obtained elsewhere (``az account get-access-token``)
  used instead of ``DefaultAzureCredential``. It is never logged or written anywhere.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.parse
from typing import Any

try:
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.core.pipeline.transport import RequestsTransport
    from azure.mgmt.core.polling.arm_polling import ARMPolling
except ImportError as exc:  # pragma: no cover - exercised only without the Azure SDKs
    raise ImportError("the azure provider needs the Azure SDKs: pip install mldeployer-azure") from exc

_LAZY = {
    # azure-ai-ml alone takes seconds to import: offline work (validate, iam-policy) never loads these
    "rest": ("azure.ai.ml._restclient.arm_ml_service", "models"),
    "MLClient": ("azure.ai.ml", "MLClient"),
    "monitor_models": ("azure.mgmt.monitor", "models"),
    "MonitorManagementClient": ("azure.mgmt.monitor", "MonitorManagementClient"),
    "MetricsQueryClient": ("azure.monitor.query", "MetricsQueryClient"),
    "MetricAggregationType": ("azure.monitor.query", "MetricAggregationType"),
    "BlobServiceClient": ("azure.storage.blob", "BlobServiceClient"),
    "ContentSettings": ("azure.storage.blob", "ContentSettings"),
    "LinearRetry": ("azure.storage.blob", "LinearRetry"),
    "MatchConditions": ("azure.core", "MatchConditions"),
}


def __getattr__(name: str) -> Any:
    """The heavy SDK pieces, imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(name)
    import importlib

    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


ENDPOINT_ENV = "DEPLOYER_AZURE_ENDPOINT_URL"
TOKEN_ENV = "DEPLOYER_AZURE_TOKEN"
STORAGE_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ARM = "https://management.azure.com"
ML_API_VERSION = "2023-04-01-preview"
"""The Azure ML REST API version the provider speaks (the one azure-ai-ml uses for online deployments)."""
USER_AGENT = "mldeployer-azure"
RETRY_TOTAL = 3
"""azure-core retries per request (429 / 5xx / connection errors); the core retries beyond that."""

__all__ = [
    "ARMPolling",
    "ClientAuthenticationError",
    "Clients",
    "HttpResponseError",
    "ResourceExistsError",
    "ResourceModifiedError",
    "ResourceNotFoundError",
    "ServiceRequestError",
    "ServiceResponseError",
]


class ForwardingTransport(RequestsTransport):
    """Sends each request to ``base_url`` on the wire and restores its URL afterwards.

    Retries, long-running-operation polling and bearer-token checks all keep seeing the public
    ``https://`` URL; the original host is passed in ``X-Forwarded-Host``.
    """

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def send(self, request: Any, **kwargs: Any) -> Any:
        original = request.url
        parts = urllib.parse.urlsplit(original)
        request.url = self.base_url + urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))
        request.headers["X-Forwarded-Host"] = parts.netloc
        try:
            return super().send(request, **kwargs)
        finally:
            request.url = original


class StaticTokenCredential:
    """A bearer token obtained elsewhere (``DEPLOYER_AZURE_TOKEN``)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3000)

    def __repr__(self) -> str:  # never show the token
        return "StaticTokenCredential(***)"


def transport() -> Any:
    """The azure-core transport for every management, monitor and scoring client (None: the default)."""
    url = os.environ.get(ENDPOINT_ENV)
    return ForwardingTransport(url) if url else None


def credential() -> Any:
    token = os.environ.get(TOKEN_ENV)
    if token:
        return StaticTokenCredential(token)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


class Clients:
    """Lazy, thread-safe Azure clients for one workspace.

    ``transport`` / ``credential`` are injectable (tests pass a transport that reaches a fake ARM API);
    by default they come from :func:`transport` and :func:`credential`.
    """

    def __init__(
        self,
        subscription: str,
        resource_group: str,
        workspace: str,
        *,
        storage_account: str | None,
        credential: Any = None,
        transport: Any = None,
        blob_options: dict[str, Any] | None = None,
    ) -> None:
        self.subscription = subscription
        self.resource_group = resource_group
        self.workspace = workspace
        self.storage_account = storage_account
        self._credential = credential
        self._transport = transport
        self._blob_options = blob_options or {}
        self._lock = threading.Lock()
        self._made: dict[str, Any] = {}

    # -- shared pieces --------------------------------------------------------------------------
    @property
    def cred(self) -> Any:
        if self._credential is None:
            self._credential = credential()
        return self._credential

    def _kwargs(self) -> dict[str, Any]:
        t = self._transport if self._transport is not None else transport()
        kw: dict[str, Any] = {"retry_total": RETRY_TOTAL, "user_agent": USER_AGENT}
        if t is not None:
            kw["transport"] = t
        return kw

    def _get(self, key: str, make: Any) -> Any:
        with self._lock:
            if key not in self._made:
                self._made[key] = make()
            return self._made[key]

    # -- clients --------------------------------------------------------------------------------
    def ml(self) -> Any:
        """``MLClient`` for the workspace (no network call on construction)."""
        return self._get(
            "ml",
            lambda: __getattr__("MLClient")(
                self.cred,
                self.subscription,
                self.resource_group,
                self.workspace,
                show_progress=False,
                enable_telemetry=False,
                **self._kwargs(),
            ),
        )

    def service(self) -> Any:
        """The generated Azure ML management client inside :meth:`ml` (REST models, LROs, paging)."""
        return self.ml()._service_client_04_2023_preview

    def monitor(self) -> Any:
        return self._get(
            "monitor", lambda: __getattr__("MonitorManagementClient")(self.cred, self.subscription, **self._kwargs())
        )

    def metrics(self) -> Any:
        return self._get("metrics", lambda: __getattr__("MetricsQueryClient")(self.cred, **self._kwargs()))

    def blob(self) -> Any:
        """``BlobServiceClient``: a connection string from ``AZURE_STORAGE_CONNECTION_STRING`` or the account."""

        def make() -> Any:
            blob = __getattr__("BlobServiceClient")
            kw: dict[str, Any] = {
                "retry_policy": __getattr__("LinearRetry")(backoff=1, random_jitter_range=1, retry_total=RETRY_TOTAL)
            }
            kw["user_agent"] = USER_AGENT
            kw.update(self._blob_options)
            conn = os.environ.get(STORAGE_ENV)
            if conn:
                return blob.from_connection_string(conn, **kw)
            if not self.storage_account:
                raise ValueError("no storage account")
            url = f"https://{self.storage_account}.blob.core.windows.net"
            return blob(url, credential=self.cred, **kw)

        return self._get("blob", make)

    def scorer(self) -> Any:
        """A PipelineClient for scoring requests: the transport, no ARM bearer policy (the endpoint's own key
        or token goes in the request) and no retries: a scoring request is sent once, and a 5xx from the
        model is the answer, not something to retry (retrying would hide a failing release from its caller)."""

        def make() -> Any:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import UserAgentPolicy

            kw = self._kwargs()
            kw.pop("retry_total")
            policies = [UserAgentPolicy(kw.pop("user_agent"))]
            return PipelineClient("https://ml.azure.com", policies=policies, **kw)

        return self._get("scorer", make)

    def pipeline(self) -> Any:
        """The azure-core PipelineClient of :meth:`service` (for polling saved operations and scoring)."""
        return self.service()._client

    # -- identifiers ----------------------------------------------------------------------------
    @property
    def workspace_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )

    def endpoint_id(self, endpoint: str) -> str:
        return f"{self.workspace_id}/onlineEndpoints/{endpoint}"

    def deployment_id(self, endpoint: str, deployment: str) -> str:
        return f"{self.endpoint_id(endpoint)}/deployments/{deployment}"


def started(poller: Any, pipeline: Any) -> tuple[str, str]:
    """The continuation token and first status of a long-running operation started with ``polling=False``.

    The token is azure-core's JSON continuation token of ARM polling (sensitive headers filtered out), so
    it can go into the ledger and be polled by :func:`poll_once` from another process.
    """
    method = ARMPolling(0)
    method.initialize(pipeline, poller.polling_method()._initial_response, lambda r: r)
    return method.get_continuation_token(), str(method.status())


def poll_once(pipeline: Any, token: str) -> str:
    """One status read of a saved long-running operation ("InProgress", "Succeeded", "Failed", ...).

    Never sleeps; a token whose initial answer was already terminal makes no call.
    """
    method = ARMPolling(0)
    client, initial, callback = ARMPolling.from_continuation_token(
        token, client=pipeline, deserialization_callback=lambda r: r
    )
    method.initialize(client, initial, callback)
    if not method.finished():
        method.update_status()
    return str(method.status())


def request(method: str, url: str, **kwargs: Any) -> Any:
    """An azure-core ``HttpRequest`` (for scoring calls sent through a pipeline)."""
    from azure.core.rest import HttpRequest

    return HttpRequest(method, url, **kwargs)
