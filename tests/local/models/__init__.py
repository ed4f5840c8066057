"""Python-flavor test models and the small kit the progressive-delivery tests share.

Each subdirectory is one artifact: ``model: {path: DIR, flavor: python, entrypoint: "<module>:Model"}``.

* ``healthy``: answers every request (``healthy_model:Model``).
* ``flaky``: raises on every fifth request a worker serves, i.e. 20% errors (``flaky_model:Model``).
* ``slow``: answers after ~300 ms (``slow_model:Model``).
* ``sleepy``: hangs 30 s on a row whose first value is -5, else the sum (``sleepy_model:Model``).
* ``failing``: raises on every request (``failing_model:Model``).

The kit: :func:`model_spec` copies an artifact (with a tag, so two copies have two digests),
:func:`write_spec` writes a spec YAML for subprocesses, :func:`deployer_processes` finds every
process whose command line names a ``DEPLOYER_HOME`` (supervisors and their forked workers), and
:func:`teardown` destroys every endpoint of a home and then kills whatever still runs there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployer.local.provider import LocalProvider
from deployer.protocols import ProviderContext
from deployer.spec import Target

HERE = Path(__file__).parent
ENTRYPOINTS = {
    "healthy": "healthy_model:Model",
    "flaky": "flaky_model:Model",
    "slow": "slow_model:Model",
    "sleepy": "sleepy_model:Model",
    "failing": "failing_model:Model",
}


def model_dir(kind: str, dest: Path, tag: str = "") -> Path:
    """Copy the ``kind`` artifact to ``dest`` (adding ``tag.txt`` so two copies get two digests)."""
    if not dest.exists():
        shutil.copytree(HERE / kind, dest, ignore=shutil.ignore_patterns("__pycache__"))
        (dest / "tag.txt").write_text(f"{kind} {tag}\n")
    return dest


def model_spec(kind: str, root: Path, tag: str = "") -> dict[str, str]:
    """The spec's ``model`` section for the ``kind`` artifact copied under ``root``."""
    path = model_dir(kind, root / f"model-{kind}-{tag or 'x'}", tag)
    return {"path": str(path), "flavor": "python", "entrypoint": ENTRYPOINTS[kind]}


def spec_dict(
    name: str,
    model: dict[str, str],
    *,
    strategy: dict[str, Any] | None = None,
    gates: list[dict[str, Any]] | None = None,
    replicas: int = 1,
) -> dict[str, Any]:
    return {
        "name": name,
        "target": {"provider": "local"},
        "model": model,
        "resources": {"replicas": replicas},
        "strategy": strategy or {"type": "all-at-once"},
        "gates": gates or [],
    }


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def canary(*weights: int, bake_s: float = 1.5, **kw: Any) -> dict[str, Any]:
    return {"type": "canary", "steps": [{"weight": w, "bake_s": bake_s} for w in weights], **kw}


def deployer_processes(home: Path) -> dict[int, str]:
    """Live processes whose command line mentions ``home`` (pid -> command line). Zombies have none."""
    needle = str(home).encode()
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmd and state != "Z":
            out[int(entry.name)] = cmd.replace(b"\0", b" ").decode(errors="replace").strip()
    return out


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def wait_no_processes(home: Path, timeout: float = 20.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    procs = deployer_processes(home)
    while procs and time.monotonic() < deadline:
        time.sleep(0.1)
        procs = deployer_processes(home)
    return procs


def teardown(home: Path) -> dict[int, str]:
    """Destroy every endpoint in ``home``'s ledger; SIGKILL what is left. Returns what had to be killed."""
    import deployer
    from deployer.ledger import Ledger

    db = home / "ledger.db"
    if db.exists():
        ledger = Ledger(db)
        try:
            names = [e.name for e in ledger.endpoints()]
            with contextlib.suppress(Exception):
                ledger.db.execute("DELETE FROM locks")
        finally:
            ledger.close()
        for name in names:
            with contextlib.suppress(Exception):
                deployer.destroy(name, state=str(db))
    left = wait_no_processes(home, timeout=5.0)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return left


@pytest.fixture(name="e2e_home")
def e2e_home_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``DEPLOYER_HOME``; afterwards every endpoint is destroyed and nothing may outlive it.

    Import it into a test module (``from .models import e2e_home_fixture``) to use ``e2e_home``.
    """
    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    monkeypatch.delenv("DEPLOYER_LOCAL_TOKEN", raising=False)
    monkeypatch.delenv("DEPLOYER_ACTOR", raising=False)
    yield home
    killed = teardown(home)
    assert not killed, f"processes outlived destroy and were killed: {killed}"


def local_provider(home: Path) -> LocalProvider:
    """A local provider on ``home`` (what the tests observe the endpoint with)."""
    return LocalProvider(ProviderContext(target=Target(), options=LocalProvider.Options(), home=home))


def observed_weights(home: Path, endpoint: str) -> dict[str, int]:
    obs = local_provider(home).observe(endpoint)
    assert obs is not None
    return dict(obs.traffic.weights)
