"""The local endpoint keeps its port across stops, kills and reboots; a supervisor is alive when it holds its lock.

Real supervisor and worker processes on 127.0.0.1. A "reboot" is simulated the way one looks from the
endpoint directory: the supervisor and its workers are gone (SIGKILL) and the runtime files
(``supervisor.pid``, ``supervisor.lock``, ``state.json``, worker acks) with them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from deployer.errors import ConflictError
from deployer.local.provider import LocalProvider
from deployer.local.state import Paths, pid_alive, read_json, supervisor_pid, write_atomic
from deployer.records import Traffic

from .conftest import release_for, wait, wait_until

pytestmark = pytest.mark.timeout(90)

POS = [[2.0, 0, 0, 0]]


def deployed(provider: LocalProvider, model_dirs: dict[str, Path]) -> int:
    """Deploy r0001 to ``churn``; its port."""
    r1 = release_for(provider, model_dirs["a"], "r0001", resources={"replicas": 2})
    assert wait(provider, provider.deploy_release(r1, Traffic.all_to("r0001"))).state == "succeeded"
    return port_of(provider)


def port_of(provider: LocalProvider) -> int:
    obs = provider.observe("churn")
    assert obs is not None and obs.status == "ready", obs
    return int(obs.meta["port"])


def stop_supervisor(provider: LocalProvider, sig: int) -> None:
    """Send ``sig`` to the running supervisor; return once it and its workers are gone."""
    paths = provider.paths("churn")
    pid = supervisor_pid(paths)
    assert pid is not None
    workers = [int(p) for p in (read_json(paths.state) or {}).get("workers", [])]
    os.kill(pid, sig)
    wait_until(lambda: not any(pid_alive(p) for p in [pid, *workers]), what="the supervisor and workers to exit")
    assert supervisor_pid(paths) is None


def redeploy(provider: LocalProvider) -> None:
    assert wait(provider, provider.route("churn", Traffic.all_to("r0001"))).state == "succeeded"
    assert provider.invoke("churn", POS).status == 200


def reboot(paths: Paths) -> None:
    """What a reboot leaves of a killed supervisor: no pid, lock, state or worker files."""
    for f in (paths.pid, paths.lock, paths.state, *paths.workers.glob("*.json")):
        f.unlink(missing_ok=True)


def test_port_is_kept_after_sigterm_and_a_redeploy(provider: LocalProvider, model_dirs: dict[str, Path]) -> None:
    port = deployed(provider, model_dirs)
    stop_supervisor(provider, signal.SIGTERM)
    redeploy(provider)
    assert port_of(provider) == port


def test_port_is_kept_after_sigkill_and_a_reboot(provider: LocalProvider, model_dirs: dict[str, Path]) -> None:
    port = deployed(provider, model_dirs)
    stop_supervisor(provider, signal.SIGKILL)
    redeploy(provider)
    assert port_of(provider) == port
    stop_supervisor(provider, signal.SIGKILL)
    reboot(provider.paths("churn"))
    redeploy(provider)
    assert port_of(provider) == port


def test_remembered_port_taken_is_a_conflict_naming_it(provider: LocalProvider, model_dirs: dict[str, Path]) -> None:
    port = deployed(provider, model_dirs)
    stop_supervisor(provider, signal.SIGTERM)
    squatter = socket.socket()
    try:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        with pytest.raises(ConflictError) as err:
            provider.route("churn", Traffic.all_to("r0001"))
        assert f"127.0.0.1:{port}" in str(err.value) and "destroy" in (err.value.hint or "")
        assert supervisor_pid(provider.paths("churn")) is None, "no supervisor started elsewhere"
    finally:
        squatter.close()
    redeploy(provider)
    assert port_of(provider) == port


@pytest.fixture()
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated live process whose pid a dead supervisor's files will name."""
    proc = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    yield proc
    proc.kill()
    proc.wait(10)


def test_reused_pid_is_dead_and_never_signalled(
    provider: LocalProvider, model_dirs: dict[str, Path], stranger: subprocess.Popen[bytes]
) -> None:
    port = deployed(provider, model_dirs)
    paths = provider.paths("churn")
    state = read_json(paths.state) or {}
    stop_supervisor(provider, signal.SIGKILL)
    # The dead supervisor's files now name a live, unrelated process, as after pid reuse.
    write_atomic(paths.pid, f"{stranger.pid}\n".encode())
    write_atomic(paths.lock, f"{stranger.pid}\n".encode())
    write_atomic(paths.state, orjson.dumps({**state, "pid": stranger.pid}))
    assert supervisor_pid(paths) is None
    obs = provider.observe("churn")
    assert obs is not None and obs.status == "failed" and "pid" not in obs.meta
    redeploy(provider)
    assert port_of(provider) == port
    assert wait(provider, provider.destroy("churn")).state == "succeeded"
    assert stranger.poll() is None, "the unrelated process was signalled"


def test_destroy_of_a_dead_supervisor_with_a_reused_pid(
    provider: LocalProvider, model_dirs: dict[str, Path], stranger: subprocess.Popen[bytes]
) -> None:
    deployed(provider, model_dirs)
    paths = provider.paths("churn")
    stop_supervisor(provider, signal.SIGKILL)
    write_atomic(paths.pid, f"{stranger.pid}\n".encode())
    write_atomic(paths.lock, f"{stranger.pid}\n".encode())
    op = provider.destroy("churn")
    assert wait(provider, op).state == "succeeded"
    assert not paths.root.exists()
    assert stranger.poll() is None, "destroy signalled a pid whose lock is not held"
