"""The in-memory platform wired to the engine through the test harness, for the engine's own tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.ledger import Ledger, ReleaseRow
from deployer.spec import Spec
from deployer.testing.harness import Harness
from deployer.testing.memory import MemoryProvider, MemoryWorld
from deployer.waiting import FakeClock

NAME = "churn"


@dataclass
class Rig:
    """One endpoint on a :class:`MemoryWorld`, deployed through :class:`Harness` with a fake clock."""

    root: Path
    world: MemoryWorld = field(default_factory=MemoryWorld)
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.harness = self.harness_for(self.root / "ledger.db")

    def harness_for(self, ledger: Path) -> Harness:
        return Harness(ledger, clock=self.clock, provider_factory=lambda spec: MemoryProvider(self.world))

    def spec(self, version: int, *, ledger: Path | None = None, **extra: Any) -> Spec:
        model = self.root / "models" / f"model-v{version}.bin"
        if not model.exists():
            model.parent.mkdir(parents=True, exist_ok=True)
            model.write_bytes(f"model version {version}\n".encode() * 64)
        data: dict[str, Any] = {
            "name": NAME,
            "target": {"provider": "memory"},
            "model": {"path": str(model), "flavor": "sklearn"},
            "state": {"path": str(ledger or self.root / "ledger.db")},
            **extra,
        }
        return Spec.model_validate(data)

    def rows(self, ledger: Path | None = None) -> dict[str, ReleaseRow]:
        db = Ledger(ledger or self.root / "ledger.db")
        try:
            return {r.id: r for r in db.releases(NAME)}
        finally:
            db.close()

    def live(self, ledger: Path | None = None) -> str | None:
        lives = [r.id for r in self.rows(ledger).values() if r.status == "live"]
        assert len(lives) <= 1, f"the ledger names {lives} live"
        return lives[0] if lives else None

    def traffic(self) -> dict[str, int]:
        ep = self.world.endpoints.get(NAME)
        return dict(ep.traffic.weights) if ep else {}

    def journal(self, step: str) -> list[Any]:
        db = Ledger(self.root / "ledger.db")
        try:
            return [op for op in db.operations(NAME) if op.step == step]
        finally:
            db.close()


CANARY = {"type": "canary", "steps": [{"weight": 25, "bake_s": 10}, {"weight": 100, "bake_s": 0}]}
PASS = [{"type": "callable", "function": "deployer.testing.gatefns:always_pass"}]
FAIL = [{"type": "callable", "function": "deployer.testing.gatefns:always_fail"}]
