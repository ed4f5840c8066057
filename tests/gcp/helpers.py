"""Helpers shared by the gcp tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployer_gcp.options import GcpOptions
from deployer_gcp.provider import GcpProvider

from deployer.artifacts import package
from deployer.protocols import ProviderContext
from deployer.records import ArtifactRef, Operation, OperationStatus, Release
from deployer.spec import Target
from deployer.testing import make_model

from .conftest import PROJECT, REGION, options
from .fake_server import FakeServer


def make_provider(server: FakeServer, home: Path, **extra: Any) -> GcpProvider:
    opts = GcpOptions(**options(server, **extra))
    ctx = ProviderContext(target=Target(provider="gcp", project=PROJECT, region=REGION), options=opts, home=home)
    return GcpProvider(ctx)


def artifact(provider: GcpProvider, tmp_path: Path, seed: int = 1, n_features: int = 4) -> ArtifactRef:
    packed = package(make_model(tmp_path / "models", seed, n_features), tmp_path / f"pkg-{seed}-{n_features}")
    return provider.store().put(packed.path, packed.digest, sha256=packed.sha256)


def release(rid: str, ref: ArtifactRef, endpoint: str = "churn", **kw: Any) -> Release:
    return Release(id=rid, endpoint=endpoint, fingerprint=kw.pop("fingerprint", f"fp{rid}"), artifact=ref, **kw)


def wait(provider: GcpProvider, op: Operation, limit: int = 40) -> OperationStatus:
    """What the core's wait loop does, without sleeping."""
    status = provider.poll(op)
    for _ in range(limit):
        if status.terminal:
            return status
        status = provider.poll(op)
    return status
