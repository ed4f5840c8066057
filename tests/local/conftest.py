"""Fixtures for the local provider tests: a tiny trained model, its artifact, a provider in tmp_path."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from deployer.artifacts import identify, upload
from deployer.local.provider import LocalOptions, LocalProvider
from deployer.local.state import Paths, pid_alive, read_acks, supervisor_pid
from deployer.protocols import ProviderContext
from deployer.records import ArtifactRef, Operation, OperationStatus, Release
from deployer.spec import Target


def train(seed: int, flip: bool = False) -> LogisticRegression:
    rng = np.random.RandomState(seed)
    x = rng.randn(200, 4)
    y = (x[:, 0] > 0).astype(int)
    return LogisticRegression().fit(x, 1 - y if flip else y)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two sklearn models that answer differently: 'a' says x0 > 0, 'b' says the opposite."""
    out = {}
    for name, flip in (("a", False), ("b", True)):
        d = tmp_path_factory.mktemp(f"model-{name}")
        joblib.dump(train(0, flip), d / "model.joblib")
        out[name] = d
    return out


@pytest.fixture()
def provider(tmp_path: Path) -> Iterator[LocalProvider]:
    p = LocalProvider(ProviderContext(target=Target(), options=LocalOptions(), home=tmp_path / "home"))
    yield p
    # Stop whatever a test left running: every supervisor below this home, its whole process group.
    for pidfile in (tmp_path / "home" / "local" / "endpoints").glob("*/supervisor.pid"):
        paths = Paths(pidfile.parent)
        pid = supervisor_pid(paths)  # alive only while it holds its lock: never a reused pid
        workers = list(read_acks(paths))
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while supervisor_pid(paths) == pid and time.monotonic() < deadline:
                time.sleep(0.05)
            if supervisor_pid(paths) == pid:
                os.killpg(pid, signal.SIGKILL)
        for w in workers:
            if pid_alive(w):
                os.kill(w, signal.SIGKILL)


def release_for(provider: LocalProvider, model_dir: Path, rid: str, endpoint: str = "churn", **kw: object) -> Release:
    ref: ArtifactRef = upload(identify(model_dir), provider.store())
    return Release(id=rid, endpoint=endpoint, fingerprint=f"fp-{rid}", artifact=ref, **kw)  # type: ignore[arg-type]


def wait(provider: LocalProvider, op: Operation, timeout: float = 30.0) -> OperationStatus:
    """The core's wait loop, minimal: poll until terminal or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        status = provider.poll(op)
        if status.terminal:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{op.kind} still running after {timeout}s: {status.message}")
        time.sleep(0.05)


def wait_until(predicate, timeout: float = 15.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
