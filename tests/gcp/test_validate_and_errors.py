"""Offline checks of the gcp provider (no network) and the one place Google errors are translated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deployer_gcp import containers
from deployer_gcp.errors import translate
from deployer_gcp.provider import GcpProvider
from google.api_core import exceptions as gexc

from deployer.api import make_provider
from deployer.errors import AuthError, CapabilityError, ConflictError, NotFoundError, SpecError, TransientError
from deployer.spec import Spec

from .conftest import BUCKET, PROJECT, REGION, SERVING_IMAGE


def _spec(tmp_path: Path, **changes: Any) -> Spec:
    model = tmp_path / "m.joblib"
    model.write_bytes(b"x")
    data: dict[str, Any] = {
        "name": "churn",
        "target": {"provider": "gcp", "project": PROJECT, "region": REGION},
        "model": {"path": str(model), "flavor": "sklearn"},
        "provider_options": {"bucket": BUCKET, "image": SERVING_IMAGE},
    }
    for key, value in changes.items():
        *path, last = key.split(".")
        node = data
        for p in path:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return Spec.model_validate(data)


def _validate(spec: Spec) -> None:
    provider = make_provider(spec.target, {})
    assert isinstance(provider, GcpProvider)
    provider.validate(spec)


def test_a_good_spec_passes(tmp_path: Path) -> None:
    _validate(_spec(tmp_path))


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"target.project": None}, "target.project"),
        ({"target.region": "us-east-1a"}, "target.region"),
        ({"provider_options.bucket": None}, "provider_options.bucket"),
        ({"provider_options.colour": "blue"}, "provider_options.colour"),
        ({"provider_options.kms_key_name": "my-key"}, "provider_options.kms_key_name"),
        ({"provider_options.labels": {"Team": "x"}}, "provider_options.labels"),
        ({"tags": {"team": "Growth Team!"}}, "tags.team"),
        ({"resources.instance_type": "ml.m5.large"}, "resources.instance_type"),
        ({"resources.gpus": 1}, "provider_options.accelerator"),
        ({"model.flavor": "onnx", "provider_options.image": None}, "provider_options.image"),
    ],
)
def test_bad_specs_name_the_field(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        _validate(_spec(tmp_path, **changes))
    assert err.value.field == field


def test_no_prebuilt_container_for_the_model_is_refused_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(containers, "model_versions", lambda release=None: {"sklearn": "1.9.0", "python": "3.11"})
    with pytest.raises(SpecError) as err:
        _validate(_spec(tmp_path, **{"provider_options.image": None}))
    assert err.value.field == "provider_options.sklearn_version" and "image" in (err.value.fix or "")
    monkeypatch.setattr(containers, "model_versions", lambda release=None: {"sklearn": "1.6.1", "python": "3.11"})
    _validate(_spec(tmp_path, **{"provider_options.image": None}))
    assert containers.sklearn_image("europe-west4", "1.6") == (
        "europe-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-6:latest"
    )


def test_capabilities_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(CapabilityError, match="min_replica_count >= 1"):
        _validate(_spec(tmp_path, autoscaling={"min": 0, "max": 2, "scale_to_zero": True}))
    with pytest.raises(CapabilityError, match="mirror"):
        _validate(_spec(tmp_path, **{"strategy.shadow": {"percent": 10}}))


def test_construction_imports_nothing_that_calls_out(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    provider = make_provider(spec.target, spec.provider_options)
    assert provider._clients._clients == {}  # type: ignore[attr-defined]
    caps = provider.capabilities
    assert caps.metrics_granularity_s == 60 and caps.metrics_delay_s == 180 and not caps.shadow


@pytest.mark.parametrize(
    "exc, expected",
    [
        (gexc.NotFound("x"), NotFoundError),
        (gexc.TooManyRequests("x"), TransientError),
        (gexc.ResourceExhausted("x"), TransientError),
        (gexc.ServiceUnavailable("x"), TransientError),
        (gexc.InternalServerError("x"), TransientError),
        (gexc.Forbidden("x"), AuthError),
        (gexc.Unauthenticated("x"), AuthError),
        (gexc.Conflict("x"), ConflictError),
        (gexc.AlreadyExists("x"), ConflictError),
        (gexc.FailedPrecondition("x"), ConflictError),
    ],
)
def test_translation_by_status(exc: Exception, expected: type[Exception]) -> None:
    err = translate(exc, "endpoints.get")
    assert type(err) is expected and err.code == type(exc).__name__
