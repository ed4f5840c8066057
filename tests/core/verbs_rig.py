"""The in-memory platform registered as provider ``memory``, so the verbs that take an endpoint name
(status, rollback, scale, guard) find it through the ledger as they find a cloud."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployer.protocols import ProviderContext
from deployer.spec import Spec
from deployer.testing.memory import MemoryProvider, MemoryWorld

NAME = "churn"
WORLD = [MemoryWorld(pending_polls=0)]
"""The platform every ``WorldProvider`` shares (a test puts a fresh one in)."""


class WorldProvider(MemoryProvider):
    """A :class:`MemoryProvider` built from a provider context, on the current :data:`WORLD`."""

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(WORLD[0])


def spec(root: Path, version: int, **extra: Any) -> Spec:
    model = root / "models" / f"model-v{version}.bin"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(f"model version {version}\n".encode() * 64)
    data: dict[str, Any] = {
        "name": NAME,
        "target": {"provider": "memory"},
        "model": {"path": str(model), "flavor": "sklearn"},
        "state": {"path": str(root / "ledger.db")},
        **extra,
    }
    return Spec.model_validate(data)
