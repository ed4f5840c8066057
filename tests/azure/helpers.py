"""Shared helpers of the azure tests: a provider pointed at the fakes, releases, and the engine-free wait."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from conftest import TARGET
from deployer_azure.provider import AzureProvider

from deployer.artifacts import package
from deployer.protocols import ProviderContext
from deployer.records import Operation, Release
from deployer.spec import Target
from deployer.testing import make_model


def make_provider(home: Path, **options: Any) -> AzureProvider:
    opts = AzureProvider.Options.model_validate({"container": "models", **options})
    return AzureProvider(ProviderContext(target=Target.model_validate(TARGET), options=opts, home=home))


def make_release(
    provider: AzureProvider, tmp: Path, endpoint: str, rid: str, *, seed: int = 1, n_features: int = 4, **extra: Any
) -> Release:
    """Package a fresh model, upload it, and return the release that serves it."""
    model = make_model(tmp / f"src-{rid}-{seed}", seed, n_features)
    packaged = package(model, tmp / f"pkg-{rid}-{seed}")
    ref = provider.store().put(packaged.path, packaged.digest, sha256=packaged.sha256)
    fingerprint = extra.pop("fingerprint", hashlib.sha256(f"{packaged.digest}/{rid}".encode()).hexdigest()[:16])
    return Release(id=rid, endpoint=endpoint, fingerprint=fingerprint, artifact=ref, **extra)


def settle(provider: Any, op: Operation, limit: int = 200) -> str:
    """Poll ``op`` until terminal (no sleeps needed: every poll advances the fake); return the state."""
    for _ in range(limit):
        status = provider.poll(op)
        if status.terminal:
            return str(status.state)
        time.sleep(0.001)
    raise AssertionError(f"{op.kind} did not finish in {limit} polls")
