"""Whether an endpoint's supervisor runs, seen from the provider, without ever trusting a bare pid.

A supervisor is alive while it holds its lock (:func:`deployer.local.state.supervisor_pid`), or
while this process has just started it and has not reaped it (a child's pid cannot be reused before
it is reaped). Nothing here signals a process that is not provably the endpoint's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess

from deployer.errors import ConflictError
from deployer.local.state import Paths, read_acks, read_desired, remembered_port, supervisor_pid
from deployer.local.supervisor import PORT_WAIT_S, bind

_CHILDREN: dict[str, subprocess.Popen[bytes]] = {}
"""The supervisor this process last started per endpoint directory (kept so it is reaped, never a zombie)."""


def started(paths: Paths, proc: subprocess.Popen[bytes]) -> None:
    """Remember the supervisor this process just started for ``paths`` (it is alive until it exits)."""
    _CHILDREN[str(paths.root)] = proc


def running_pid(paths: Paths) -> int | None:
    """The supervisor's pid while it holds its lock, or while this process has just started it.

    Never a pid read from a file alone: after a kill or a reboot that number may be an unrelated
    process. A supervisor this process started and has not reaped cannot have a reused pid.
    """
    pid = supervisor_pid(paths)
    if pid is not None:
        return pid
    proc = _CHILDREN.get(str(paths.root))
    return proc.pid if proc is not None and proc.poll() is None else None


def check_port(paths: Paths, endpoint: str) -> None:
    """Refuse, before any change, to start a supervisor whose remembered port another process holds."""
    desired = read_desired(paths)
    port = remembered_port(paths, desired.host) if desired is not None else None
    if port is None or running_pid(paths) is not None:
        return
    assert desired is not None
    try:
        bind(desired.host, port, wait_s=PORT_WAIT_S).close()
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            return  # the supervisor reports it
        raise ConflictError(
            f"local endpoint {endpoint!r} keeps the port {desired.host}:{port}, and another process now listens on it",
            hint=f"stop the process holding port {port} (`ss -ltnp 'sport = :{port}'` names it), "
            f"or `deployer destroy {endpoint}` and deploy again to get a new port",
        ) from e


def stop_orphans(paths: Paths, group: int | None) -> None:
    """SIGKILL workers left by a dead supervisor: only processes in its process group ``group``.

    A worker pid from an ack file is signalled through its group, and only when that process is
    in the group: a group with a live member keeps its id, so no unrelated process is hit.
    """
    if not group:
        return
    for wpid in read_acks(paths):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if wpid != group and os.getpgid(wpid) == group:
                os.killpg(group, signal.SIGKILL)
                return
