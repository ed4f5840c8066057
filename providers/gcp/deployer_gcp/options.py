"""``GcpOptions``: the typed ``spec.provider_options`` of the gcp provider (unknown keys are errors)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BUCKET_RE = r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$"
KMS_RE = r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$"
SERVICE_ACCOUNT_RE = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com$"
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
"""Vertex AI labels: keys and values of at most 63 lowercase letters, digits, underscores and dashes;
keys start with a letter (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models#Model,
field ``labels``)."""


class _Opt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Accelerator(_Opt):
    """GPUs / TPUs per replica (Vertex ``MachineSpec.accelerator_type`` / ``accelerator_count``)."""

    type: str = Field(..., pattern=r"^[A-Z][A-Z0-9_]+$", description="e.g. NVIDIA_TESLA_T4, NVIDIA_L4.")
    count: int = Field(1, ge=1, le=16)


class RequestLogging(_Opt):
    """Request-response logging of the endpoint to BigQuery (``Endpoint.predict_request_response_logging_config``)."""

    bigquery_table: str = Field(
        ..., pattern=r"^bq://[^./]+(\.[^./]+){1,2}$", description="bq://project.dataset[.table]"
    )
    sampling_rate: float = Field(0.1, gt=0, le=1, description="Share of requests logged (0-1].")


class GcpOptions(_Opt):
    """Settings for GCS, Vertex AI and Cloud Monitoring. See docs/providers/gcp.md."""

    bucket: str | None = Field(None, pattern=BUCKET_RE, description="GCS bucket for artifacts (required).")
    prefix: str = Field("deployer", description="Object prefix inside the bucket.")
    credentials_file: str | None = Field(
        None, description="Service-account key file; default: Application Default Credentials."
    )
    kms_key_name: str | None = Field(
        None, pattern=KMS_RE, description="Cloud KMS key (CMEK) for artifacts, models and endpoints."
    )
    machine_type: str | None = Field(
        None, description="Vertex machine type (default: resources.instance_type, else n1-standard-2)."
    )
    accelerator: Accelerator | None = None
    service_account: str | None = Field(
        None, pattern=SERVICE_ACCOUNT_RE, description="Service account the serving containers run as."
    )
    network: str | None = Field(
        None,
        pattern=r"^projects/[0-9]+/global/networks/[^/]+$",
        description="VPC network for a private endpoint (projects/NUMBER/global/networks/NAME).",
    )
    request_logging: RequestLogging | None = None
    image: str | None = Field(
        None, description="Serving image (with its own health and predict routes) instead of the prebuilt one."
    )
    sklearn_version: str | None = Field(
        None,
        pattern=r"^\d+\.\d+$",
        description="Prebuilt scikit-learn container version (e.g. '1.6'); default: the model's own version.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Added to every model and endpoint.")
    deploy_request_timeout_s: float = Field(
        1800.0, gt=0, description="Deadline Vertex gives a DeployModel (deploy_request_timeout)."
    )
    api_endpoint: str | None = Field(
        None,
        description="Vertex AI / Cloud Monitoring API host; default {region}-aiplatform.googleapis.com. "
        "An http:// URL (a local emulator) is called with anonymous credentials.",
    )
    monitoring_endpoint: str | None = Field(
        None, description="Cloud Monitoring API host; default monitoring.googleapis.com (http:// for an emulator)."
    )
    upload_chunk_mb: int = Field(16, ge=1, le=1024, description="Resumable upload chunk size (MiB).")
    metrics_granularity_s: float | None = Field(
        None, gt=0, description="Override the metrics period gates wait for (an emulator, or your own measurement)."
    )
    metrics_delay_s: float | None = Field(
        None, ge=0, description="Override the metrics publication delay gates wait for (an emulator, or measured)."
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: object) -> object:
        """``${VAR:-}`` in a spec gives "": an empty option is an unset one."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not LABEL_KEY_RE.fullmatch(k) or not LABEL_VALUE_RE.fullmatch(val):
                raise ValueError(
                    f"label {k!r}: {val!r}: keys and values are at most 63 lowercase letters, digits, '_' and '-'"
                    " (keys start with a letter)"
                )
            if k.startswith("deployer"):
                raise ValueError(f"label {k!r}: keys starting with 'deployer' are reserved")
        return v

    @model_validator(mode="after")
    def _combos(self) -> GcpOptions:
        if self.prefix and not re.fullmatch(r"[A-Za-z0-9_.\-/]*", self.prefix.strip("/")):
            raise ValueError("prefix: use letters, digits and _.-/ only")
        if self.image and self.sklearn_version:
            raise ValueError("set either image or sklearn_version, not both")
        return self


Tier = Literal["prebuilt", "custom"]
