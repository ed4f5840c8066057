"""Error translation table and offline validation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from deployer_aws import images
from deployer_aws.errors import translate
from deployer_aws.provider import AwsProvider

from deployer import artifacts, retry
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

from .helpers import REGION, ROLE, SKLEARN_CONTAINER, make_provider, raw_error

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
        ("ValidationException", "InvokeEndpoint", 400, ProviderError),
        ("ValidationException", "UpdateEndpointWeightsAndCapacities", 400, ProviderError),
        ("ValidationException", "ListTags", 400, ProviderError),
        ("ValidationException", "DeleteModel", 400, NotFoundError),
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


@pytest.mark.parametrize("op", ["UpdateEndpoint", "UpdateEndpointWeightsAndCapacities"])
def test_in_progress_endpoint_is_a_conflict_the_core_waits_out(op: str) -> None:
    body = {"Code": "ValidationException", "Message": 'Cannot update in-progress endpoint "arn:aws:sagemaker:x".'}
    err = translate(ClientError({"Error": body, "ResponseMetadata": {"HTTPStatusCode": 400}}, op))
    assert isinstance(err, ConflictError) and isinstance(err, TransientError)  # retried inside the deadline
    slept: list[float] = []
    calls = {"n": 0}

    def busy_twice() -> str:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise err
        return "updated"

    assert retry.call(busy_twice, sleep=slept.append) == "updated" and len(slept) == 2


def test_botocore_and_core_retries_share_one_deadline(server_provider: AwsProvider) -> None:
    """A persistent 503: without a shared deadline the sends multiply (8 core tries x 4 botocore tries)."""
    sent = {"n": 0}

    def unavailable(request: Any, **_: Any) -> Any:
        sent["n"] += 1
        time.sleep(0.05)
        return raw_error(request.url, 503, "ServiceUnavailable")

    server_provider._clients.client("sagemaker").meta.events.register_first(
        "before-send.sagemaker.DescribeEndpoint", unavailable
    )
    with pytest.raises(TransientError):
        retry.call(lambda: server_provider.observe("churn"), attempts=8, deadline_s=30.0, sleep=lambda s: None)
    assert sent["n"] == 8 * 4  # within the deadline, both retry as configured
    sent["n"] = 0
    start = time.monotonic()
    with pytest.raises(TransientError):
        retry.call(lambda: server_provider.observe("churn"), attempts=8, deadline_s=0.12, sleep=lambda s: None)
    assert sent["n"] <= 3  # botocore stops retrying once the shared deadline is spent (else 4 at least)
    assert time.monotonic() - start < 1.5


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


@pytest.mark.parametrize(
    ("runtime", "container"),
    [
        ({"python": "3.12.4", "scikit-learn": "1.4.2", "numpy": "2.1.3"}, "1.4-2-py312"),
        ({"python": "3.8.10", "scikit-learn": "1.2.2", "numpy": "1.24.4"}, "1.2-1"),
        ({"python": "3.8.10", "scikit-learn": "1.0.2", "numpy": "1.21.0"}, "1.0-1"),
        ({"python": "3.7.3", "scikit-learn": "0.23.2", "numpy": "1.19.5"}, "0.23-1"),
        ({"python": "3.11.7", "scikit-learn": "1.9.1", "numpy": "2.4.6"}, None),  # this project's lock
        ({"python": "3.8.10", "scikit-learn": "1.2.2", "numpy": "2.0.1"}, None),  # numpy 2 pickles need numpy 2
        ({"python": "3.13.0", "scikit-learn": "1.4.2", "numpy": "2.1.0"}, None),  # newer Python than any image
    ],
)
def test_sklearn_container_loads_the_model(runtime: dict[str, str], container: str | None) -> None:
    assert images.pick_sklearn(runtime) == container


def test_plan_refuses_a_model_no_prebuilt_container_loads(tmp_path: Path) -> None:
    """The default (no sklearn_version) with this project's own lock: refused offline, with the fix."""
    opts = {"bucket": "models-bucket", "role_arn": ROLE}
    with pytest.raises(SpecError, match="scikit-learn 1.9") as info:
        make_provider(tmp_path).validate(spec(provider_options=opts).model_copy(update={"provider_options": opts}))
    assert info.value.field == "provider_options.sklearn_version"
    assert "provider_options.image" in str(info.value) and "sklearn_version" in str(info.value)
    make_provider(tmp_path).validate(spec(provider_options={**opts, "image": "1.dkr.ecr.us-east-1.amazonaws.com/s:1"}))


def test_manifest_records_the_runtime(tmp_path: Path) -> None:
    from deployer.testing import make_model

    packaged = artifacts.package(make_model(tmp_path / "m", 1), tmp_path / "out")
    runtime = artifacts.read_manifest(packaged.path)["runtime"]
    assert runtime == artifacts.runtime_versions()
    assert set(runtime) == {"python", "scikit-learn", "numpy"}


def test_metric_windows_are_whole_published_minutes(tmp_path: Path) -> None:
    import datetime as dt

    from deployer_aws import metrics as cw_metrics

    now = dt.datetime(2026, 12, 2, 7, 30, 41, 500, tzinfo=dt.UTC)
    req = cw_metrics.request("churn", "r0001", 90, [], "AWS/SageMaker", now=now - dt.timedelta(seconds=120))
    assert req["EndTime"] == dt.datetime(2026, 12, 2, 7, 28, tzinfo=dt.UTC)
    assert req["StartTime"] == dt.datetime(2026, 12, 2, 7, 26, tzinfo=dt.UTC)  # 90 s -> two whole minutes
    caps = make_provider(tmp_path).capabilities
    assert (caps.metrics_granularity_s, caps.metrics_delay_s) == (60.0, 120.0)
