"""Offline checks of a spec for the aws provider (``validate``): no network, no SDK call."""

from __future__ import annotations

import difflib
import re

from pydantic import ValidationError

from deployer import artifacts
from deployer.errors import CapabilityError, SpecError
from deployer.records import Capabilities
from deployer.spec import Spec
from deployer_aws import _sdk, guardrails, images
from deployer_aws.options import AwsOptions
from deployer_aws.sagemaker import NAME_RE, model_name

REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


def options(spec: Spec) -> AwsOptions:
    try:
        return AwsOptions.model_validate(spec.provider_options)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(p) for p in e["loc"])
        raise SpecError(
            f"provider_options.{loc}" if loc else "provider_options",
            e["msg"],
            fix="see the options table in docs/providers/aws.md",
        ) from exc


def sklearn_container(opts: AwsOptions, runtime: dict[str, str] | None = None) -> str:
    """The prebuilt scikit-learn container version for a model made with ``runtime`` (the manifest's
    fields; default: this interpreter's). An explicit ``sklearn_version`` is taken as given."""
    if opts.sklearn_version:
        return opts.sklearn_version
    runtime = runtime if runtime is not None else artifacts.runtime_versions()
    picked = images.pick_sklearn(runtime)
    if picked is None:
        offered = "; ".join(f"{v}: {images.describe_runtime(ships)}" for v, ships in images.SKLEARN_CONTAINERS.items())
        raise SpecError(
            "provider_options.sklearn_version",
            f"no prebuilt SageMaker scikit-learn container can load a model pickled with "
            f"{images.describe_runtime(runtime)} (the containers ship {offered})",
            fix="train with a scikit-learn/numpy a container ships, or set provider_options.image to a serving "
            "image with your versions, or set provider_options.sklearn_version to force a container",
        )
    return picked


def check_region(region: str | None) -> str:
    """``region`` if SageMaker runs there (botocore's own region list, offline), else SpecError with the
    nearest known name."""
    if not region or not REGION_RE.fullmatch(region):
        raise SpecError("target.region", f"an AWS region is needed, got {region!r}", fix="e.g. region: us-east-1")
    known = _sdk.regions()
    if region not in known:
        close = difflib.get_close_matches(region, sorted(known), n=1)
        guess = f", did you mean {close[0]}" if close else ""
        raise SpecError(
            "target.region",
            f"unknown region {region!r}{guess}",
            fix="use a region where SageMaker runs, e.g. us-east-1; one newer than this boto3 needs an upgrade",
        )
    return region


def validate(spec: Spec, caps: Capabilities) -> AwsOptions:
    """Every offline rule; returns the parsed options."""
    opts = options(spec)
    region = check_region(spec.target.region)
    if not opts.bucket:
        raise SpecError("provider_options.bucket", "no S3 bucket for artifacts", fix="set provider_options.bucket")
    if not opts.role_arn:
        raise SpecError(
            "provider_options.role_arn",
            "SageMaker needs an execution role",
            fix="set provider_options.role_arn to a role SageMaker can assume (see docs)",
        )
    longest = model_name(spec.name, "r999999")
    if not NAME_RE.fullmatch(spec.name) or len(longest) > 63:
        raise SpecError(
            "name",
            "SageMaker names are at most 63 letters, digits and hyphens",
            fix="shorten the endpoint name",
        )
    for k in {**spec.tags, **opts.tags}:
        if k.lower().startswith("aws:"):
            raise SpecError("tags", f"tag key {k!r} uses the reserved prefix 'aws:'")
        if k.lower().startswith("deployer:"):
            raise SpecError("tags", f"tag key {k!r} uses the prefix 'deployer:', which deployer writes itself")
    flavor = spec.model.flavor
    if flavor == "sklearn" and not opts.image:
        version = sklearn_container(opts)
        if images.sklearn_image(region, version) is None:
            raise SpecError(
                "target.region",
                f"no prebuilt scikit-learn image is known for {region}",
                fix="set provider_options.image to a serving image in your ECR",
            )
        if opts.network_isolation:
            raise SpecError(
                "provider_options.network_isolation",
                "the scikit-learn container downloads its handler from S3, which isolation blocks",
                fix="set provider_options.image to an image with the handler built in",
            )
    if flavor in ("onnx", "python") and not opts.image:
        raise SpecError(
            "provider_options.image",
            f"flavor {flavor!r} needs a serving image on SageMaker",
            fix="push the deployer serving image to ECR and set provider_options.image",
        )
    if opts.serverless is not None:
        if spec.resources.instance_type:
            raise SpecError(
                "resources.instance_type",
                "serverless endpoints take no instance type",
                fix="remove resources.instance_type or provider_options.serverless",
            )
        if spec.autoscaling is not None:
            raise CapabilityError(f"autoscaling: {caps.reason('autoscaling')}")
    else:
        itype = spec.resources.instance_type
        if itype is not None and itype not in _sdk.instance_types():
            raise SpecError(
                "resources.instance_type",
                f"{itype!r} is not a SageMaker hosting instance type",
                fix="use an ml.* type such as ml.m5.large",
            )
    if spec.autoscaling is not None and (spec.autoscaling.scale_to_zero or spec.autoscaling.min == 0):
        raise CapabilityError(f"scale_to_zero: {caps.reason('scale_to_zero')}")
    if spec.strategy.native:
        if opts.serverless is not None:
            raise CapabilityError(f"native rollout: {caps.reason('native_rollout')}")
        guardrails.check(spec.strategy)
    if opts.data_capture is not None and opts.serverless is not None:
        raise SpecError("provider_options.data_capture", "serverless endpoints do not support data capture")
    return opts
