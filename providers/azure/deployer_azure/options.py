"""``provider_options`` for the azure provider (``spec.provider_options`` validated into :class:`AzureOptions`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Probe(BaseModel):
    """Liveness or readiness probe of a deployment (Azure ML ProbeSettings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_delay_s: int = Field(10, ge=0)
    period_s: int = Field(10, ge=1)
    timeout_s: int = Field(2, ge=1)
    failure_threshold: int = Field(30, ge=1)
    success_threshold: int = Field(1, ge=1)


class AzureOptions(BaseModel):
    """Azure settings. The workspace comes from ``target`` (subscription, resource_group, workspace)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    storage_account: str | None = Field(
        None,
        pattern=r"^[a-z0-9]{3,24}$",
        description="Storage account for artifacts (AZURE_STORAGE_CONNECTION_STRING overrides it).",
    )
    container: str = Field("deployer", pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    prefix: str = Field("", description="Blob name prefix inside the container.")
    upload_concurrency: int = Field(8, ge=1, le=64)
    block_size_mb: int = Field(8, ge=1, le=4000)
    instance_type: str = Field("Standard_DS3_v2", description="VM size (resources.instance_type wins).")
    environment: str | None = Field(
        None, description="An existing environment (ARM id or azureml:name:version) instead of the generated one."
    )
    image: str = Field(
        "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
        description="Base image of the generated environment.",
    )
    serving_image: str | None = Field(
        None,
        description="A serving image made by `deployer build` (in a registry the workspace pulls from): serves any "
        "flavor as a custom container instead of the generated scoring script.",
    )
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    request_timeout_ms: int = Field(5000, ge=1, le=180000)
    max_concurrent_requests_per_instance: int = Field(1, ge=1)
    auth_mode: Literal["key", "aml_token", "aad_token"] = "key"
    public_network_access: Literal["enabled", "disabled"] = "enabled"
    egress_public_network_access: Literal["enabled", "disabled"] = "enabled"
    app_insights: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    autoscale_cpu_percent: float = Field(
        70.0, gt=0, le=100, description="CPU threshold of the autoscale rule (target_metric cpu_utilization)."
    )
    metrics_granularity_s: float | None = Field(
        None, gt=0, description="Override the metrics period gates wait for (an emulator, or your own measurement)."
    )
    metrics_delay_s: float | None = Field(
        None, ge=0, description="Override the metrics publication delay gates wait for (an emulator, or measured)."
    )
