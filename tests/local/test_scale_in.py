"""Scaling in drops nothing: retired workers close their keep-alive connections gracefully.

A bounded client runs against real supervisor and worker processes on 127.0.0.1 while the worker
count goes up and down: ``CONNECTIONS`` threads sending continuously, half through one httpx pool of
at most ``CONNECTIONS // 2`` keep-alive connections, half through their own ``http.client``
connection (which, unlike httpx, does not check a pooled connection before reusing it, so a server
that closes an idle keep-alive connection under it fails the next request). Every ``RECYCLE``-th
request asks for ``Connection: close`` so that connections are re-opened and spread over the workers
as real clients' are. A request that fails in any way (reset, refused, "server disconnected",
non-2xx) counts; none may. The client must also have seen ``Connection: close`` on answers to
requests that did not ask for it: that is how a retiring worker ends its keep-alive connections.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from deployer.local.provider import LocalProvider
from deployer.local.state import pid_alive, read_json
from deployer.records import Release, Traffic
from deployer.spec import Autoscaling

from .conftest import release_for, wait, wait_until
from .models import ENTRYPOINTS, model_dir

pytestmark = pytest.mark.timeout(110)

CONNECTIONS = 4
RECYCLE = 50
CYCLES = 10
BODY = b"[[2.0, 0, 0, 0]]"


class KeepAliveLoad:
    """``CONNECTIONS`` threads holding at most ``CONNECTIONS`` keep-alive connections, sending continuously."""

    def __init__(self, url: str) -> None:
        self.url = urlsplit(url)
        limits = httpx.Limits(max_connections=CONNECTIONS // 2, max_keepalive_connections=CONNECTIONS // 2)
        self.pool = httpx.Client(base_url=url, limits=limits, timeout=10)
        self.stop = threading.Event()
        self.ok = 0
        self.closed = 0
        self.failures: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.plain: dict[int, http.client.HTTPConnection] = {}
        senders = [self._httpx] * (CONNECTIONS // 2) + [self._plain] * (CONNECTIONS - CONNECTIONS // 2)
        self.threads = [threading.Thread(target=self._send, args=(s,), daemon=True) for s in senders]

    def _httpx(self, close: bool) -> tuple[int, str]:
        headers = {"connection": "close"} if close else {}
        r = self.pool.post("/predict", content=BODY, headers={"content-type": "application/json", **headers})
        return r.status_code, r.headers.get("connection", "")

    def _plain(self, close: bool) -> tuple[int, str]:
        conn = self._conn()
        try:
            conn.request("POST", "/predict", body=BODY, headers={"connection": "close"} if close else {})
            resp = conn.getresponse()
            resp.read()
        except Exception:
            conn.close()
            raise
        return resp.status, resp.getheader("connection") or ""

    def _conn(self) -> http.client.HTTPConnection:
        me = threading.get_ident()
        if me not in self.plain:
            self.plain[me] = http.client.HTTPConnection(self.url.hostname or "127.0.0.1", self.url.port, timeout=10)
        return self.plain[me]

    def _send(self, send: object) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            asked = n % RECYCLE == 0
            try:
                status, connection = send(asked)  # type: ignore[operator]
                failure = None if status == 200 else f"HTTP {status}"
            except (httpx.HTTPError, OSError, http.client.HTTPException) as e:
                failure, connection = f"{type(e).__name__}: {e}", ""
            with self.lock:
                if failure is None:
                    self.ok += 1
                else:
                    self.failures[failure] += 1
                if not asked and connection.lower() == "close":
                    self.closed += 1

    @contextmanager
    def running(self) -> Iterator[KeepAliveLoad]:
        for t in self.threads:
            t.start()
        try:
            yield self
        finally:
            self.finish()

    def finish(self) -> None:
        """Stop sending (idempotent) and close every connection."""
        self.stop.set()
        for t in self.threads:
            t.join(15)
        self.pool.close()
        for conn in self.plain.values():
            conn.close()

    def check(self) -> None:
        """Once finished: no request failed, and retiring workers said ``Connection: close``."""
        self.finish()
        assert not self.failures, self.failures
        assert self.closed > 0, "retiring workers ended keep-alive connections with Connection: close"


def workers(provider: LocalProvider) -> list[int]:
    return [int(p) for p in (read_json(provider.paths("churn").state) or {}).get("workers", [])]


def held_connections(pids: set[int], port: int) -> int:
    """Established TCP connections to ``port`` whose server side one of ``pids`` holds (from ``/proc``)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    inodes.add(fields[9])
    held = 0
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir() if fds.exists() else []:
            with suppress(OSError):
                held += os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes
    return held


def on_retiring(provider: LocalProvider, survivor: int) -> set[int]:
    """Wait until a worker other than ``survivor`` holds client connections; the workers that will retire."""
    retiring = set(workers(provider)) - {survivor}
    port = int(provider.observe("churn").meta["port"])  # type: ignore[union-attr]
    wait_until(lambda: held_connections(retiring, port) > 0, what="client connections on a worker that will retire")
    return retiring


def drained(provider: LocalProvider, retired: set[int]) -> None:
    """Wait until the retired workers have exited."""
    wait_until(lambda: not any(pid_alive(p) for p in retired), timeout=20, what="retired workers to exit")


@pytest.fixture()
def healthy(tmp_path: Path) -> Path:
    """A python model (the supervisor starts without importing scikit-learn)."""
    return model_dir("healthy", tmp_path / "healthy")


def release(provider: LocalProvider, model: Path, rid: str, replicas: int = 1) -> Release:
    return release_for(
        provider, model, rid, resources={"replicas": replicas}, flavor="python", entrypoint=ENTRYPOINTS["healthy"]
    )


@pytest.fixture()
def loaded(provider: LocalProvider, healthy: Path) -> Iterator[tuple[int, KeepAliveLoad]]:
    """``churn`` serving r0001 on one worker (the survivor of every scale-in) under keep-alive load."""
    r1 = release(provider, healthy, "r0001")
    assert wait(provider, provider.deploy_release(r1, Traffic.all_to("r0001"))).state == "succeeded"
    (survivor,) = workers(provider)
    load = KeepAliveLoad(provider.observe("churn").url or "")  # type: ignore[union-attr]
    with load.running():
        yield survivor, load


def test_scale_in_under_keep_alive_load_drops_nothing(
    provider: LocalProvider, loaded: tuple[int, KeepAliveLoad]
) -> None:
    survivor, load = loaded
    for _ in range(CYCLES):
        assert wait(provider, provider.scale("churn", "r0001", Autoscaling(min=3, max=3))).state == "succeeded"
        retiring = on_retiring(provider, survivor)
        assert wait(provider, provider.scale("churn", "r0001", Autoscaling(min=1, max=1))).state == "succeeded"
        assert workers(provider) == [survivor]
        drained(provider, retiring)
    load.check()
    assert load.ok > 0


def test_retiring_a_release_with_more_replicas_drops_nothing(
    provider: LocalProvider, healthy: Path, loaded: tuple[int, KeepAliveLoad]
) -> None:
    survivor, load = loaded
    for n in range(2, 2 + CYCLES):
        big = release(provider, healthy, f"r{n:04d}", replicas=3)
        assert wait(provider, provider.deploy_release(big, Traffic.all_to("r0001"))).state == "succeeded"
        retiring = on_retiring(provider, survivor)
        assert wait(provider, provider.retire_release("churn", big.id)).state == "succeeded"
        assert workers(provider) == [survivor]
        drained(provider, retiring)
    load.check()
    assert load.ok > 0
