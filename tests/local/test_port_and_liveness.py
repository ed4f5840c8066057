"""The local endpoint keeps its port across stops, kills and reboots; a supervisor is alive when it holds its lock.

Real supervisor and worker processes on 127.0.0.1. A "reboot" is simulated the way one looks from the
endpoint directory: the supervisor and its workers are gone (SIGKILL) and the runtime files
(``supervisor.pid``, ``supervisor.lock``, ``state.json``, worker acks) with them.
"""

from __future__ import annotations

import http.client
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
from deployer.spec import Autoscaling

from .conftest import release_for, wait, wait_until
from .models import ENTRYPOINTS, model_dir

pytestmark = pytest.mark.timeout(90)

POS = [[2.0, 0, 0, 0]]


def deployed(provider: LocalProvider, tmp_path: Path) -> int:
    """Deploy r0001 (a python model: the supervisor starts without importing scikit-learn) to ``churn``; its port."""
    model = model_dir("healthy", tmp_path / "healthy")
    r1 = release_for(
        provider, model, "r0001", resources={"replicas": 2}, flavor="python", entrypoint=ENTRYPOINTS["healthy"]
    )
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


def test_port_is_kept_across_sigterm_sigkill_and_reboot(provider: LocalProvider, tmp_path: Path) -> None:
    port = deployed(provider, tmp_path)
    stop_supervisor(provider, signal.SIGTERM)  # a clean stop, as at shutdown
    redeploy(provider)
    assert port_of(provider) == port
    stop_supervisor(provider, signal.SIGKILL)
    redeploy(provider)
    assert port_of(provider) == port
    stop_supervisor(provider, signal.SIGKILL)
    reboot(provider.paths("churn"))
    redeploy(provider)
    assert port_of(provider) == port

    # SIGKILL while a client holds a keep-alive connection: the orphaned workers drain it, but they
    # let go of the listening socket at once, so a redeploy right away gets the port back.
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    client.request("POST", "/predict", body=b"[[1, 2, 3, 4]]")
    assert client.getresponse().read()
    pid = supervisor_pid(provider.paths("churn"))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: supervisor_pid(provider.paths("churn")) is None, what="the supervisor to die")
    redeploy(provider)
    assert port_of(provider) == port

    # The remembered port taken by another process: a conflict naming it, and nothing changes.
    stop_supervisor(provider, signal.SIGTERM)
    desired = provider.paths("churn").desired.read_bytes()
    squatter = socket.socket()
    try:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        with pytest.raises(ConflictError) as err:
            provider.scale("churn", "r0001", Autoscaling(min=3, max=3))
        assert f"127.0.0.1:{port}" in str(err.value) and "destroy" in (err.value.hint or "")
        assert supervisor_pid(provider.paths("churn")) is None, "no supervisor started elsewhere"
        assert provider.paths("churn").desired.read_bytes() == desired, "refused before any change"
    finally:
        squatter.close()
    redeploy(provider)
    assert port_of(provider) == port

    # The same kill, then destroy at once: the orphaned workers, still draining, go too.
    client.close()
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    client.request("POST", "/predict", body=b"[[1, 2, 3, 4]]")
    assert client.getresponse().read()
    paths = provider.paths("churn")
    pid, workers = supervisor_pid(paths), (read_json(paths.state) or {}).get("workers", [])
    assert pid is not None and workers
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: supervisor_pid(paths) is None, what="the supervisor to die")
    assert wait(provider, provider.destroy("churn")).state == "succeeded"
    wait_until(lambda: not any(pid_alive(w) for w in workers), timeout=2, what="orphaned workers killed by destroy")
    client.close()


@pytest.fixture()
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated live process whose pid a dead supervisor's files will name."""
    proc = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    yield proc
    proc.kill()
    proc.wait(10)


def test_reused_pid_is_dead_and_never_signalled(
    provider: LocalProvider, tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    deployed(provider, tmp_path)
    paths = provider.paths("churn")
    state = read_json(paths.state) or {}
    stop_supervisor(provider, signal.SIGKILL)
    # The dead supervisor's files now name a live, unrelated process, as after pid reuse.
    for f in (paths.pid, paths.lock):
        write_atomic(f, f"{stranger.pid}\n".encode())
    write_atomic(paths.state, orjson.dumps({**state, "pid": stranger.pid}))
    assert supervisor_pid(paths) is None
    obs = provider.observe("churn")
    assert obs is not None and obs.status == "failed" and "pid" not in obs.meta
    assert wait(provider, provider.destroy("churn")).state == "succeeded"
    assert not paths.root.exists()
    assert stranger.poll() is None, "destroy signalled a pid whose lock is not held"
