"""On-disk state of one local endpoint, shared by the provider, the supervisor and its workers.

Layout of an endpoint directory (``<home>/local/endpoints/<name>/``)::

    desired.json       written by the provider (atomic rename): what should run
    listen.json        written by the supervisor when it first binds: host and port. Never deleted
                       but by destroy, so the endpoint keeps its port across stops, kills and reboots
    state.json         written by the supervisor: pid, host, port, worker pids, version applied
    supervisor.pid     the supervisor's pid while it runs (informational)
    supervisor.lock    flock held by the running supervisor for its whole life; holds its pid
    supervisor.log     the supervisor's and workers' log
    workers/<pid>.json ack of each worker: version applied, releases loaded, load errors
    metrics/<id>.json  each worker's flushed metrics (kept after it exits, for windows)

Readers never see a partial file: every writer writes a temporary file and renames it. This
module imports nothing heavy (no pydantic) so the supervisor starts fast.

**A supervisor is alive exactly while its lock is held** (:func:`supervisor_pid`). A pid alone
proves nothing: after a kill or a reboot the number in a file may belong to an unrelated process,
which must never be signalled. The kernel drops the lock when the holder dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from deployer.procs import pid_alive


@dataclass(frozen=True)
class ReleaseSpec:
    """One release as a worker loads it."""

    path: str
    flavor: str = "sklearn"
    entrypoint: str | None = None
    fingerprint: str | None = None
    replicas: int = 1
    """Workers this release asks for; the endpoint runs the largest count among its releases."""


@dataclass(frozen=True)
class Desired:
    """What the supervisor and its workers converge to. ``version`` rises with every write."""

    endpoint: str
    version: int = 0
    releases: dict[str, ReleaseSpec] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    mirror: dict[str, int] = field(default_factory=dict)
    """Shadow traffic: release id -> percent of requests copied to it (see ``Traffic.mirror``)."""
    workers: int = 1
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Desired:
        releases = {rid: ReleaseSpec(**r) for rid, r in data.get("releases", {}).items()}
        return cls(**{**data, "releases": releases})


class Paths:
    """File names inside one endpoint directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.desired = self.root / "desired.json"
        self.listen = self.root / "listen.json"
        self.state = self.root / "state.json"
        self.pid = self.root / "supervisor.pid"
        self.lock = self.root / "supervisor.lock"
        self.log = self.root / "supervisor.log"
        self.workers = self.root / "workers"
        self.metrics = self.root / "metrics"
        self.write_lock = self.root / "desired.lock"

    def ack(self, pid: int) -> Path:
        return self.workers / f"{pid}.json"


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_desired(paths: Paths) -> Desired | None:
    data = read_json(paths.desired)
    return Desired.from_dict(data) if data is not None else None


def write_desired(paths: Paths, desired: Desired) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    write_atomic(paths.desired, desired.to_json())


@contextlib.contextmanager
def desired_lock(paths: Paths) -> Iterator[None]:
    """Serialise read-modify-write of ``desired.json`` between processes."""
    paths.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.write_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_pid(paths: Paths) -> int | None:
    try:
        return int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None


def lock_held(path: Path) -> bool:
    """True while some process holds an ``flock`` on ``path`` (probed with a shared lock, dropped at once).

    A supervisor that tries its exclusive lock during the microseconds of a probe retries
    (:data:`LOCK_RETRY_S`), so probing never makes it refuse to start.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


LOCK_RETRY_S = 0.5
"""How long a starting supervisor retries a lock it did not get before it concludes another one runs."""


def supervisor_pid(paths: Paths) -> int | None:
    """The running supervisor's pid (written in its lock file), or None when no supervisor holds the lock."""
    if not lock_held(paths.lock):
        return None
    pid = read_lock_pid(paths)  # None: taken this instant, its pid not written yet
    return pid if pid_alive(pid) else None


def read_lock_pid(paths: Paths) -> int | None:
    """The pid the last supervisor wrote in its lock file, alive or not (say so only with :func:`lock_held`)."""
    try:
        return int(paths.lock.read_text().strip())
    except (OSError, ValueError):
        return None


def remembered_port(paths: Paths, host: str) -> int | None:
    """The port the endpoint listened on last time on ``host`` (``listen.json``), or None."""
    data = read_json(paths.listen) or {}
    port = data.get("port")
    return port if data.get("host") == host and isinstance(port, int) and port > 0 else None


def read_acks(paths: Paths) -> dict[int, dict[str, Any]]:
    """Worker acks by pid."""
    out: dict[int, dict[str, Any]] = {}
    try:
        names = os.listdir(paths.workers)
    except FileNotFoundError:
        return out
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            data = read_json(paths.workers / name)
            if data is not None and isinstance(data.get("pid"), int):
                out[data["pid"]] = data
    return out


def log_tail(paths: Paths, lines: int = 20) -> str:
    try:
        text = paths.log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
