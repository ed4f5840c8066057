"""``AwsOptions``: the typed ``spec.provider_options`` of the aws provider (unknown keys are errors)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ROLE_ARN_RE = r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$"
BUCKET_RE = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class _Opt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Serverless(_Opt):
    """SageMaker Serverless Inference instead of instances (no per-release autoscaling)."""

    memory_mb: int = Field(2048, description="1024-6144, in 1024 MB steps.")
    max_concurrency: int = Field(5, ge=1, le=200)
    provisioned_concurrency: int | None = Field(None, ge=1, le=200)

    @model_validator(mode="after")
    def _memory(self) -> Serverless:
        if self.memory_mb not in (1024, 2048, 3072, 4096, 5120, 6144):
            raise ValueError("serverless.memory_mb must be one of 1024, 2048, 3072, 4096, 5120, 6144")
        if self.provisioned_concurrency and self.provisioned_concurrency > self.max_concurrency:
            raise ValueError("serverless.provisioned_concurrency must not exceed max_concurrency")
        return self


class DataCapture(_Opt):
    """SageMaker data capture; written into every endpoint config, so it survives every update."""

    destination: str = Field(..., pattern=r"^s3://[^/]+(/.*)?$", description="s3://bucket/prefix")
    sampling_percent: int = Field(100, ge=0, le=100)
    mode: Literal["Input", "Output", "InputAndOutput"] = "InputAndOutput"
    kms_key_id: str | None = None


class Vpc(_Opt):
    subnets: list[str] = Field(..., min_length=1, max_length=16)
    security_groups: list[str] = Field(..., min_length=1, max_length=5)


class AwsOptions(_Opt):
    """Settings for S3, SageMaker and CloudWatch. See docs/providers/aws.md."""

    bucket: str | None = Field(None, pattern=BUCKET_RE, description="S3 bucket for artifacts (required).")
    prefix: str = Field("deployer", description="Key prefix inside the bucket.")
    create_bucket: bool = Field(False, description="Create the bucket (public access blocked) when missing.")
    role_arn: str | None = Field(None, pattern=ROLE_ARN_RE, description="SageMaker execution role (required).")
    profile: str | None = Field(None, description="Named AWS profile; default: the standard credential chain.")
    sse: Literal["AES256", "aws:kms"] = Field("AES256", description="Server-side encryption of artifacts.")
    kms_key_id: str | None = Field(None, description="KMS key for sse 'aws:kms' (and the endpoint's volumes).")
    image: str | None = Field(
        None,
        description="Serving image for flavors other than 'sklearn' (the deployer serving image in ECR).",
    )
    sklearn_version: Literal["1.4-2-py312", "1.2-1", "1.0-1", "0.23-1"] | None = Field(
        None,
        description="Prebuilt SageMaker scikit-learn container; default: the newest one that can load the model "
        "(its scikit-learn minor, numpy major and Python versions), else `plan` refuses.",
    )
    serverless: Serverless | None = None
    data_capture: DataCapture | None = None
    vpc: Vpc | None = None
    network_isolation: bool = False
    tags: dict[str, str] = Field(default_factory=dict, description="Added to every resource the provider creates.")
    rollback_alarms: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Existing CloudWatch alarms that stop a native rollout (besides those made from gates).",
    )
    custom_metrics: list[str] = Field(
        default_factory=list,
        description="Custom CloudWatch metric names metrics() also reads (gates add theirs).",
    )
    metrics_namespace: str = Field("AWS/SageMaker", description="Namespace of custom gate / autoscaling metrics.")
    upload_chunk_mb: int = Field(16, ge=5, le=512, description="Multipart part size.")
    upload_concurrency: int = Field(10, ge=1, le=64, description="Parallel part uploads.")

    @model_validator(mode="after")
    def _combos(self) -> AwsOptions:
        if self.kms_key_id and self.sse != "aws:kms":
            raise ValueError("kms_key_id needs sse: 'aws:kms'")
        if self.prefix and not re.fullmatch(r"[A-Za-z0-9!_.*'()/-]*", self.prefix.strip("/")):
            raise ValueError("prefix: use letters, digits and !_.*'()/- only")
        return self
