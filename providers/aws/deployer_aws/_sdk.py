"""The only module that imports boto3 / botocore.

Clients are created lazily (constructing a provider makes no network call and imports no SDK until
the first call), in the target's region, with botocore's *standard* retry mode and a small attempt
budget: botocore absorbs short throttling bursts, the core's tenacity policy handles the rest
(:class:`~deployer.errors.TransientError`). Both share one deadline: inside the core's retry
(:func:`deployer.retry.remaining_s`), botocore starts no retry once it is spent.
``AWS_ENDPOINT_URL`` (and the per-service ``AWS_ENDPOINT_URL_<SERVICE>``) is honoured, so the same
code runs against moto or LocalStack.
Credentials come from boto3's standard chain; nothing here reads or stores them.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    import botocore.session
    from boto3.s3.transfer import TransferConfig
    from botocore.validate import ParamValidator
except ImportError as exc:  # pragma: no cover - exercised only without boto3
    raise ImportError("the aws provider needs boto3: pip install mldeployer-aws") from exc

from deployer import retry

if TYPE_CHECKING:
    from botocore.client import BaseClient

ClientError = botocore.exceptions.ClientError
BotoCoreError = botocore.exceptions.BotoCoreError
NoCredentialsError = botocore.exceptions.NoCredentialsError
PartialCredentialsError = botocore.exceptions.PartialCredentialsError
NoRegionError = botocore.exceptions.NoRegionError
EndpointConnectionError = botocore.exceptions.EndpointConnectionError
ConnectTimeoutError = botocore.exceptions.ConnectTimeoutError
ReadTimeoutError = botocore.exceptions.ReadTimeoutError
ConnectionClosedError = botocore.exceptions.ConnectionClosedError
ParamValidationError = botocore.exceptions.ParamValidationError

MAX_ATTEMPTS = 4
"""botocore ``total_max_attempts``: one try plus three quick retries; the core retries beyond that."""

__all__ = [
    "ParamValidator",
    "BotoCoreError",
    "ClientError",
    "Clients",
    "TransferConfig",
    "transfer_config",
]


def _config(region: str) -> botocore.config.Config:
    return botocore.config.Config(
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=32,
        user_agent_extra="mldeployer-aws",
    )


def transfer_config(chunk_mb: int, concurrency: int) -> TransferConfig:
    """Multipart settings for artifact uploads and downloads."""
    size = chunk_mb * 1024 * 1024
    return TransferConfig(
        multipart_threshold=size,
        multipart_chunksize=size,
        max_concurrency=concurrency,
        use_threads=True,
    )


class Clients:
    """Lazy, thread-safe boto3 clients for one region.

    ``profile`` selects a named profile; otherwise the standard credential chain applies
    (environment, shared config, SSO, container / instance roles).
    """

    def __init__(self, region: str | None, profile: str | None = None) -> None:
        self._region = region
        self._profile = profile
        self._lock = threading.Lock()
        self._session: Any = None
        self._clients: dict[str, BaseClient] = {}

    @property
    def region(self) -> str:
        if self._region:
            return self._region
        region = self._get_session().region_name
        if not region:
            raise NoRegionError()
        self._region = region
        return region

    def _get_session(self) -> Any:
        if self._session is None:
            self._session = boto3.session.Session(profile_name=self._profile, region_name=self._region)
        return self._session

    def client(self, service: str) -> BaseClient:
        """The client for ``service`` ("s3", "sagemaker", ...), created on first use."""
        with self._lock:
            c = self._clients.get(service)
            if c is None:
                kwargs: dict[str, Any] = {"config": _config(self.region)}
                url = endpoint_override(service)
                if url:
                    kwargs["endpoint_url"] = url
                c = self._get_session().client(service, **kwargs)
                # as specific as botocore's own retry handler, and first (the emitter runs the most
                # specific registrations first)
                sid = c.meta.service_model.service_id.hyphenize()
                c.meta.events.register_first(f"needs-retry.{sid}", _within_deadline)
                self._clients[service] = c
            return c

    def account_id(self) -> str:
        return str(self.client("sts").get_caller_identity()["Account"])


def endpoint_override(service: str) -> str | None:
    """The endpoint URL the environment sets for ``service`` (``AWS_ENDPOINT_URL_<SERVICE>``, else
    ``AWS_ENDPOINT_URL``), as botocore reads them; None for the public endpoint."""
    per_service = os.environ.get("AWS_ENDPOINT_URL_" + service.upper().replace("-", "_"))
    return per_service or os.environ.get("AWS_ENDPOINT_URL") or None


def endpoint_override_any() -> str | None:
    """``AWS_ENDPOINT_URL``, else any ``AWS_ENDPOINT_URL_<SERVICE>`` set: the client talks to something
    other than AWS (a mock, LocalStack)."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        return os.environ["AWS_ENDPOINT_URL"]
    return next((v for k, v in sorted(os.environ.items()) if k.startswith("AWS_ENDPOINT_URL_") and v), None)


def web_page(response: dict[str, Any]) -> bool:
    """Whether a parsed error response is an HTML page (AWS APIs answer JSON or XML, never HTML)."""
    meta = response.get("ResponseMetadata")
    headers = meta.get("HTTPHeaders", {}) if isinstance(meta, dict) else {}
    kind = str(headers.get("content-type", "")).lower() if isinstance(headers, dict) else ""
    err = response.get("Error")
    body = str(err.get("Message", "")).lstrip().lower() if isinstance(err, dict) else ""
    return kind.startswith("text/html") or body.startswith(("<!doctype html", "<html"))


def _within_deadline(response: Any = None, **_: Any) -> bool | None:
    """``needs-retry`` handler, run before botocore's own: False (no retry) once the core's retry
    deadline is spent, or when a mock (an endpoint override) answered with a web page, which asking
    again cannot change; None lets botocore decide."""
    left = retry.remaining_s()
    if left is not None and left <= 0:
        return False
    parsed = response[1] if isinstance(response, tuple) and len(response) == 2 else None
    if isinstance(parsed, dict) and endpoint_override_any() is not None and web_page(parsed):
        return False
    return None


def instance_types() -> frozenset[str]:
    """SageMaker hosting instance types, from botocore's bundled service model (offline)."""
    global _INSTANCE_TYPES
    if _INSTANCE_TYPES is None:
        import botocore.session

        model = botocore.session.get_session().get_service_model("sagemaker")
        _INSTANCE_TYPES = frozenset(model.shape_for("ProductionVariantInstanceType").enum)
    return _INSTANCE_TYPES


_INSTANCE_TYPES: frozenset[str] | None = None


def regions() -> frozenset[str]:
    """Regions where SageMaker runs, in every partition, from botocore's bundled endpoint data (offline)."""
    global _REGIONS
    if _REGIONS is None:
        session = boto3.session.Session()
        found: set[str] = set()
        for partition in session.get_available_partitions():
            found |= set(session.get_available_regions("sagemaker", partition_name=partition))
        _REGIONS = frozenset(found)
    return _REGIONS


_REGIONS: frozenset[str] | None = None


def service_model(service: str) -> Any:
    """botocore's own model of ``service`` (operations and shapes), read from the installed data files."""
    return botocore.session.get_session().get_service_model(service)
