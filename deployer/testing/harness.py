"""Test harness: run the engine against any provider with call counting and fault injection.

:class:`Harness` drives the same code path as ``deployer.apply`` (prepare, lock, engine) but wraps
the provider in :class:`Recorder`, which counts every call and can inject faults, so a test can
assert "an unchanged redeploy made no provider write and uploaded nothing".
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.engine import Engine, Outcome
from deployer.errors import TransientError
from deployer.events import Event
from deployer.ledger import Ledger
from deployer.records import ArtifactRef
from deployer.spec import Autoscaling, Spec

WRITES = frozenset({"deploy_release", "route", "scale", "retire_release", "destroy", "rollout_native"})


class Crash(BaseException):
    """Raised from ``on_event`` to simulate the deploying process dying right after a journaled step.

    A BaseException, so the engine's error handling (which catches DeployerError) does not see it,
    just as it would not see SIGKILL.
    """


class _CountingStore:
    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self._inner = inner
        self._rec = recorder

    def find(self, digest: str) -> ArtifactRef | None:
        self._rec.calls["store.find"] += 1
        found: ArtifactRef | None = self._inner.find(digest)
        return found

    @property
    def layout(self) -> str:
        return str(getattr(self._inner, "layout", "archive"))

    def put(self, path: Path, digest: str, on_progress: Any = None, sha256: str | None = None) -> ArtifactRef:
        self._rec.calls["store.put"] += 1
        self._rec.bytes_uploaded += sum(f.stat().st_size for f in [Path(path), *Path(path).rglob("*")] if f.is_file())
        ref: ArtifactRef = self._inner.put(path, digest, on_progress, sha256=sha256)
        return ref

    def get(self, ref: ArtifactRef, dest: Path) -> Path:
        out: Path = self._inner.get(ref, dest)
        return out

    def delete(self, digest: str) -> None:
        self._inner.delete(digest)


class Recorder:
    """Wraps a provider: counts calls; with ``fault_rate`` raises TransientError before some calls."""

    def __init__(self, inner: Any, *, fault_rate: float = 0.0, seed: int = 7) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self.bytes_uploaded = 0
        self.fault_rate = fault_rate
        self.faults = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._store = _CountingStore(inner.store(), self)

    @property
    def writes(self) -> int:
        return sum(n for k, n in self.calls.items() if k in WRITES)

    def store(self) -> _CountingStore:
        return self._store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_") or isinstance(attr, type):  # e.g. Options: a model class
            return attr

        def wrapped(*a: Any, **kw: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
                inject = self.fault_rate and name not in ("validate",) and self._rng.random() < self.fault_rate
                if inject:
                    self.faults += 1
            if inject:
                raise TransientError(f"injected fault in {name}", code="Injected")
            return attr(*a, **kw)

        return wrapped


@dataclass
class Harness:
    """Deploy specs through the engine with a recorded provider and a private ledger."""

    ledger_path: Path
    fault_rate: float = 0.0
    events: list[Event] = field(default_factory=list)
    recorder: Recorder | None = None
    setup: Any = None
    """Called with each provider the harness builds (e.g. to register SDK fault hooks)."""
    clock: Any = None
    """The engine's clock (default: the system clock); a FakeClock makes backoff and bakes instant."""
    provider_factory: Any = None
    """Builds the provider for a spec (default: the one ``spec.target`` names), e.g. a MemoryProvider."""

    def _provider(self, spec: Spec) -> Any:
        if self.provider_factory is not None:
            return self.provider_factory(spec)
        from deployer import api

        return api.make_provider(spec.target, spec.provider_options)

    def _record(self, provider: Any) -> Recorder:
        """Apply ``setup`` to a freshly built provider and wrap it in the (kept) Recorder."""
        if self.setup is not None:
            self.setup(provider)
        self.recorder = Recorder(provider, fault_rate=self.fault_rate)
        return self.recorder

    def _recorded(self, spec: Spec) -> tuple[Any, Recorder, Any]:
        from deployer import api

        prep = api.prepare(spec, provider=self._provider(spec))
        rec = self._record(prep.provider)
        # the upload goes through the counting store so uploads are counted
        upload = None
        if prep.upload is not None and prep.packaged is not None:
            packaged, store = prep.packaged, rec.store()

            def upload() -> ArtifactRef:
                from deployer.artifacts import upload as upload_model

                return upload_model(packaged, store)

        return prep, rec, upload

    def deploy(self, spec: Spec, *, on_event: Any = None, timeout_s: float = 120.0) -> Outcome:
        prep, rec, upload = self._recorded(spec)
        ledger = Ledger(self.ledger_path)
        try:
            with ledger.lock(spec.name, "deploy"):
                engine = Engine(
                    rec,  # type: ignore[arg-type]  # a Recorder proxies the Provider it wraps
                    ledger,
                    on_event=on_event or self.events.append,
                    timeout_s=timeout_s,
                    clock=self.clock,
                )
                return engine.deploy(spec, prep.candidate, upload)
        finally:
            ledger.close()

    def engine_call(self, spec: Spec, fn: Any, purpose: str = "op") -> Outcome:
        rec = self._record(self._provider(spec))
        ledger = Ledger(self.ledger_path)
        try:
            with ledger.lock(spec.name, purpose):
                engine = Engine(rec, ledger, on_event=self.events.append, timeout_s=120.0, clock=self.clock)  # type: ignore[arg-type]
                result: Outcome = fn(engine)
                return result
        finally:
            ledger.close()

    def rollback(self, spec: Spec, to: str | None = None) -> Outcome:
        return self.engine_call(spec, lambda e: e.rollback(spec.name, to=to), "rollback")

    def scale(self, spec: Spec, autoscaling: Autoscaling) -> Outcome:
        return self.engine_call(spec, lambda e: e.scale(spec.name, autoscaling), "scale")

    def destroy(self, spec: Spec) -> Outcome:
        return self.engine_call(spec, lambda e: e.destroy(spec.name), "destroy")

    def ledger(self) -> Ledger:
        return Ledger(self.ledger_path)


def crash_after(n: int) -> Any:
    """An ``on_event`` that raises :class:`Crash` at the n-th step event (1-based)."""
    seen = {"n": 0}

    def hook(event: Event) -> None:
        if event.kind in ("step.started", "step.done"):
            seen["n"] += 1
            if seen["n"] == n:
                raise Crash(f"crash after event {n}: {event.kind} {getattr(event, 'step', '')}")

    return hook
