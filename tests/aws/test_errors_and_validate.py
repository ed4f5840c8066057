"""Error translation table and offline validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from deployer_aws.errors import translate

from deployer.errors import (
    AuthError,
    CapabilityError,
    ConflictError,
    NotFoundError,
    ProviderError,
    QuotaError,
    SpecError,
    TransientError,
)
from deployer.spec import Spec

from .helpers import REGION, ROLE, SKLEARN_CONTAINER, make_provider

pytestmark = pytest.mark.timeout(30)


def client_error(code: str, op: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


@pytest.mark.parametrize(
    ("code", "op", "status", "expected"),
    [
        ("ThrottlingException", "CreateModel", 400, TransientError),
        ("Throttling", "DescribeAlarms", 400, TransientError),
        ("TooManyRequestsException", "InvokeEndpoint", 429, TransientError),
        ("SlowDown", "PutObject", 503, TransientError),
        ("InternalFailure", "DescribeEndpoint", 500, TransientError),
        ("503", "HeadObject", 503, TransientError),
        ("AccessDeniedException", "CreateEndpoint", 400, AuthError),
        ("AccessDenied", "PutObject", 403, AuthError),
        ("ExpiredTokenException", "DescribeEndpoint", 400, AuthError),
        ("UnrecognizedClientException", "DescribeEndpoint", 400, AuthError),
        ("403", "HeadObject", 403, AuthError),
        ("ResourceLimitExceeded", "CreateEndpoint", 400, QuotaError),
        ("ValidationException", "DescribeEndpoint", 400, NotFoundError),
        ("ValidationException", "DescribeModel", 400, NotFoundError),
        ("ValidationException", "CreateEndpointConfig", 400, ProviderError),
        ("ValidationException", "UpdateEndpoint", 400, ProviderError),
        ("ObjectNotFoundException", "DeregisterScalableTarget", 400, NotFoundError),
        ("NoSuchKey", "GetObject", 404, NotFoundError),
        ("ResourceInUse", "DeleteEndpointConfig", 400, ConflictError),
        ("ConcurrentUpdateException", "PutScalingPolicy", 400, TransientError),
    ],
)
def test_translation_table(code: str, op: str, status: int, expected: type[Exception]) -> None:
    exc = client_error(code, op, status)
    err = translate(exc)
    assert type(err) is expected
    assert err.code == code


def test_translation_of_transport_errors() -> None:
    assert isinstance(translate(EndpointConnectionError(endpoint_url="https://x")), TransientError)
    assert isinstance(translate(ReadTimeoutError(endpoint_url="https://x")), TransientError)
    assert isinstance(translate(NoCredentialsError()), AuthError)


def test_errors_are_raised_from_the_original(provider: Any) -> None:
    sm = provider._clients.client("sagemaker")

    def deny(**_: Any) -> None:
        raise client_error("AccessDeniedException", "DescribeEndpoint")

    sm.meta.events.register_first("before-call.sagemaker.DescribeEndpoint", deny)
    with pytest.raises(AuthError) as info:
        provider.observe("churn")
    assert isinstance(info.value.__cause__, ClientError)


def spec(**kw: Any) -> Spec:
    body: dict[str, Any] = {
        "name": "churn",
        "target": {"provider": "aws", "region": REGION},
        "model": {"path": "m.joblib"},
        "resources": {"instance_type": "ml.m5.large"},
        "provider_options": {"bucket": "models-bucket", "role_arn": ROLE, "sklearn_version": SKLEARN_CONTAINER},
    }
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(body.get(k), dict):
            body[k] = {**body[k], **v}
        else:
            body[k] = v
    return Spec.model_validate(body)


def test_validate_accepts_a_good_spec(tmp_path: Path) -> None:
    make_provider(tmp_path).validate(spec())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"provider_options": {"bucket": None}}, "provider_options.bucket"),
        ({"provider_options": {"role_arn": None}}, "provider_options.role_arn"),
        ({"provider_options": {"surprise": 1}}, "provider_options.surprise"),
        ({"provider_options": {"kms_key_id": "k"}}, "provider_options"),
        ({"target": {"region": None}}, "target.region"),
        ({"resources": {"instance_type": "m5.large"}}, "resources.instance_type"),
        ({"provider_options": {"network_isolation": True}}, "provider_options.network_isolation"),
        ({"model": {"path": "m.onnx", "flavor": "onnx"}}, "provider_options.image"),
        ({"provider_options": {"serverless": {"memory_mb": 2048}}}, "resources.instance_type"),
        ({"tags": {"aws:team": "x"}}, "tags"),
        (
            {"strategy": {"type": "canary", "native": True, "steps": [{"weight": 5}, {"weight": 50}, {"weight": 100}]}},
            "strategy.steps",
        ),
        ({"strategy": {"type": "linear", "native": True, "interval_s": 7200}}, "strategy"),
    ],
)
def test_validate_rejects(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        make_provider(tmp_path).validate(spec(**changes))
    assert info.value.field.startswith(field)


def test_validate_capabilities(tmp_path: Path) -> None:
    with pytest.raises(CapabilityError):
        make_provider(tmp_path).validate(spec(autoscaling={"min": 0, "max": 2, "scale_to_zero": True}))
    serverless = spec(
        resources={"instance_type": None},
        provider_options={"serverless": {"memory_mb": 2048}},
        autoscaling={"min": 1, "max": 2},
    )
    with pytest.raises(CapabilityError):
        make_provider(tmp_path).validate(serverless)
    provider = make_provider(tmp_path, serverless={"memory_mb": 2048})
    assert not provider.capabilities.autoscaling and "autoscaling" in provider.capabilities.unsupported
    assert not provider.capabilities.native_rollout


def test_construction_makes_no_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    provider = make_provider(tmp_path)
    provider.validate(spec())
    assert provider._clients._clients == {}
