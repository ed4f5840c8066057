"""Azure ML managed online endpoints, deployments and assets through the SDK's generated REST client.

Writes are started with ``polling=False``: the call returns once Azure Resource Manager accepted the
request, and the operation's azure-core continuation token goes into ``Operation.ref``; ``poll`` reads
its status with one GET (:func:`deployer_azure._sdk.poll_once`). So the SDK's own pollers, which sleep
30 s (``MLClient(polling_interval=...)``) or a hard-coded 5 s for deployments
(``azure.ai.ml.constants._common.LROConfigurations.POLL_INTERVAL``), never run: the core's wait loop
decides the pace. Reads return ``None`` for a missing resource instead of raising.

REST reference: https://learn.microsoft.com/rest/api/azureml/online-endpoints and
https://learn.microsoft.com/rest/api/azureml/online-deployments (api-version :data:`_sdk.ML_API_VERSION`).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

from deployer.errors import ConflictError, NotFoundError
from deployer_azure import _sdk
from deployer_azure.errors import azure_errors

FINGERPRINT_TAG = "deployer-fingerprint"
DIGEST_TAG = "deployer-artifact"
RELEASE_TAG = "deployer-release"
ENDPOINT_TAG = "deployer-endpoint"
CODE_NAME = "deployer-score"
ENV_NAME = "deployer-sklearn"

RELEASE_STATUS = {
    "Creating": "creating",
    "Updating": "updating",
    "Scaling": "updating",
    "Succeeded": "ready",
    "Failed": "failed",
    "Canceled": "failed",
    "Deleting": "retiring",
}
"""Deployment provisioning states (DeploymentProvisioningState in the REST reference)."""
ENDPOINT_STATUS = {
    "Creating": "creating",
    "Updating": "updating",
    "Succeeded": "ready",
    "Failed": "failed",
    "Canceled": "failed",
    "Deleting": "updating",
}
RUNNING = frozenset({"Creating", "Updating", "Scaling", "Deleting", "InProgress", "Accepted", "Running"})


def text(value: Any) -> str:
    """An enum member or string from a REST model as its wire value ("" for None)."""
    return "" if value is None else str(getattr(value, "value", value))


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


class Online:
    """Azure ML calls for one workspace (see the module docstring)."""

    def __init__(self, clients: _sdk.Clients) -> None:
        self._c = clients
        self.rg = clients.resource_group
        self.ws = clients.workspace

    @property
    def _svc(self) -> Any:
        return self._c.service()

    # -- reads ----------------------------------------------------------------------------------
    def endpoint(self, name: str) -> Any | None:
        try:
            with azure_errors("OnlineEndpoints.Get"):
                return self._svc.online_endpoints.get(self.rg, self.ws, name)
        except NotFoundError:
            return None

    def deployments(self, endpoint: str) -> list[Any]:
        try:
            with azure_errors("OnlineDeployments.List"):
                return list(self._svc.online_deployments.list(self.rg, self.ws, endpoint))
        except NotFoundError:
            return []

    def deployment(self, endpoint: str, name: str) -> Any | None:
        try:
            with azure_errors("OnlineDeployments.Get"):
                return self._svc.online_deployments.get(self.rg, self.ws, endpoint, name)
        except NotFoundError:
            return None

    def keys(self, endpoint: str) -> str:
        with azure_errors("OnlineEndpoints.ListKeys"):
            return str(self._svc.online_endpoints.list_keys(self.rg, self.ws, endpoint).primary_key)

    def token(self, endpoint: str) -> str:
        with azure_errors("OnlineEndpoints.GetToken"):
            return str(self._svc.online_endpoints.get_token(self.rg, self.ws, endpoint).access_token)

    # -- long-running writes --------------------------------------------------------------------
    def put_endpoint(self, name: str, body: Any) -> str:
        with azure_errors("OnlineEndpoints.CreateOrUpdate"):
            poller = self._svc.online_endpoints.begin_create_or_update(self.rg, self.ws, name, body, polling=False)
        return _sdk.started(poller, self._c.pipeline())[0]

    def put_deployment(self, endpoint: str, name: str, body: Any) -> str:
        with azure_errors("OnlineDeployments.CreateOrUpdate"):
            poller = self._svc.online_deployments.begin_create_or_update(
                self.rg, self.ws, endpoint, name, body, polling=False
            )
        return _sdk.started(poller, self._c.pipeline())[0]

    def delete_deployment(self, endpoint: str, name: str) -> str | None:
        """Start the delete; None when the deployment is already gone."""
        try:
            with azure_errors("OnlineDeployments.Delete"):
                poller = self._svc.online_deployments.begin_delete(self.rg, self.ws, endpoint, name, polling=False)
        except NotFoundError:
            return None
        return self._pending(poller)

    def delete_endpoint(self, name: str) -> str | None:
        try:
            with azure_errors("OnlineEndpoints.Delete"):
                poller = self._svc.online_endpoints.begin_delete(self.rg, self.ws, name, polling=False)
        except NotFoundError:
            return None
        return self._pending(poller)

    def _pending(self, poller: Any) -> str | None:
        """The token of a started delete; None when ARM answered it done (204: there was nothing to delete)."""
        token, state = _sdk.started(poller, self._c.pipeline())
        return None if state == "Succeeded" else token

    def status(self, token: str) -> str:
        """One status read of a saved operation (see :func:`deployer_azure._sdk.poll_once`)."""
        with azure_errors("OperationStatus"):
            return _sdk.poll_once(self._c.pipeline(), token)

    # -- assets (synchronous PUTs) --------------------------------------------------------------
    def ensure_model(self, name: str, version: str, uri: str, tags: dict[str, str]) -> str:
        """Register the model version unless it exists; a version carrying another fingerprint is a conflict."""
        ops = self._svc.model_versions
        try:
            with azure_errors("ModelVersions.Get"):
                found = ops.get(self.rg, self.ws, name, version)
        except NotFoundError:
            found = None
        if found is not None:
            have = (found.properties.tags or {}).get(FINGERPRINT_TAG)
            if have != tags[FINGERPRINT_TAG]:
                raise ConflictError(
                    f"model {name}:{version} in workspace {self.ws} carries fingerprint {have}, "
                    f"not {tags[FINGERPRINT_TAG]}: another ledger made it",
                    hint="deploy from the ledger that owns this endpoint, or `deployer adopt` it",
                )
            return str(found.id)
        body = _sdk.rest.ModelVersion(
            properties=_sdk.rest.ModelVersionProperties(model_uri=uri, model_type="custom_model", tags=tags)
        )
        with azure_errors("ModelVersions.CreateOrUpdate"):
            return str(ops.create_or_update(self.rg, self.ws, name, version, body).id)

    def ensure_code(self, version: str, uri: str) -> str:
        ops = self._svc.code_versions
        try:
            with azure_errors("CodeVersions.Get"):
                return str(ops.get(self.rg, self.ws, CODE_NAME, version).id)
        except NotFoundError:
            pass
        body = _sdk.rest.CodeVersion(properties=_sdk.rest.CodeVersionProperties(code_uri=uri))
        with azure_errors("CodeVersions.CreateOrUpdate"):
            return str(ops.create_or_update(self.rg, self.ws, CODE_NAME, version, body).id)

    def ensure_environment(
        self, version: str, image: str, conda: dict[str, Any] | None, inference: dict[str, Any] | None = None
    ) -> str:
        """The environment ``version``: ``image`` with a conda file, or a custom container serving ``inference``
        routes (``{"liveness_route": {"path", "port"}, ...}``)."""
        ops = self._svc.environment_versions
        try:
            with azure_errors("EnvironmentVersions.Get"):
                return str(ops.get(self.rg, self.ws, ENV_NAME, version).id)
        except NotFoundError:
            pass
        r = _sdk.rest
        props = r.EnvironmentVersionProperties(image=image)
        if conda is not None:
            props.conda_file = json.dumps(conda, indent=1)
        if inference is not None:
            props.inference_config = r.InferenceContainerProperties(
                **{name: r.Route(path=route["path"], port=route["port"]) for name, route in inference.items()}
            )
        body = r.EnvironmentVersion(properties=props)
        with azure_errors("EnvironmentVersions.CreateOrUpdate"):
            return str(ops.create_or_update(self.rg, self.ws, ENV_NAME, version, body).id)


class TokenBook:
    """Continuation tokens of started operations, kept under the deployer home until they finish.

    ``deploy_release`` called again after a crash finds the token of the operation it started and
    returns it, so the same Azure operation is resumed instead of a second PUT being sent.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._read().get(key)

    def put(self, key: str, token: str) -> None:
        with self._lock:
            data = self._read()
            data[key] = token
            self._write(data)

    def drop(self, key: str) -> None:
        with self._lock:
            data = self._read()
            if data.pop(key, None) is not None:
                self._write(data)

    def _write(self, data: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        tmp.replace(self.path)
