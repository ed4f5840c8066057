"""One serving worker: a forked child of the supervisor running uvicorn on the shared socket.

The worker loads the desired releases *before* it starts accepting connections, then watches
``desired.json`` (a ``stat`` every 100 ms). On a new version it loads the new releases in a thread
while it keeps serving, swaps the routing table in one assignment (so neither a new release nor a
traffic or mirror change drops a request), drops retired releases and writes its ack file. Every
0.5 s it flushes its metrics and rewrites its ack as a heartbeat (``beat``) saying whether a
prediction has run past its release's recycle limit (``hung``); the supervisor replaces a hung or
silent worker. It exits when the supervisor dies (``PR_SET_PDEATHSIG`` plus a parent check). On
SIGTERM it retires gracefully, dropping no request (:mod:`deployer.local.drain`).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import orjson

from deployer.local.state import Desired, Paths, ReleaseSpec, read_desired, write_atomic
from deployer.serving.app import ServingApp
from deployer.serving.loader import Predictor, load
from deployer.serving.metrics import MetricsRecorder
from deployer.serving.routing import Routing
from deployer.serving.settings import Settings, read_settings

log = logging.getLogger("deployer.local.worker")

WATCH_INTERVAL_S = 0.1
FLUSH_INTERVAL_S = 0.5

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGTERM this process when its parent exits; exit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)


class Worker:
    """The worker's serving state: the app, the loaded releases and the applied version."""

    def __init__(self, paths: Paths, parent: int) -> None:
        self.paths = paths
        self.parent = parent
        self.pid = os.getpid()
        metrics_file = paths.metrics / f"{self.pid}-{time.time_ns()}.json"
        self.app = ServingApp(recorder=MetricsRecorder(metrics_file), metrics_dir=paths.metrics)
        self.specs: dict[str, ReleaseSpec] = {}
        self.settings: dict[str, Settings] = {}
        self.errors: dict[str, str] = {}
        self.version = -1
        self.server: Any = None

    def _load_one(self, rid: str, spec: ReleaseSpec) -> Predictor | None:
        try:
            path = Path(spec.path)
            settings = read_settings(path) if path.is_dir() else Settings()
            model = load(path, spec.flavor, spec.entrypoint)
        except Exception as e:
            self.errors[rid] = str(e)
            log.error("worker %d: release %s failed to load: %s", self.pid, rid, e)
            return None
        self.errors.pop(rid, None)
        self.settings[rid] = settings
        return model

    def _plan(self, desired: Desired) -> list[tuple[str, ReleaseSpec]]:
        return [(rid, s) for rid, s in desired.releases.items() if self.specs.get(rid) != s]

    def _swap(self, desired: Desired, loaded: dict[str, Predictor | None]) -> None:
        current = self.app.routing.releases
        releases: dict[str, Predictor] = {}
        for rid in desired.releases:
            model = loaded[rid] if rid in loaded else current.get(rid)
            if model is not None:
                releases[rid] = model
        self.errors = {rid: msg for rid, msg in self.errors.items() if rid in desired.releases}
        self.settings = {rid: s for rid, s in self.settings.items() if rid in desired.releases}
        self.app.set_token(desired.token)
        self.app.routing = Routing(
            releases, dict(desired.weights), desired.version, mirror=dict(desired.mirror), settings=dict(self.settings)
        )
        self.specs = dict(desired.releases)
        self.version = desired.version
        self.write_ack()

    def apply_now(self, desired: Desired) -> None:
        """Load and swap synchronously (before serving)."""
        self._swap(desired, {rid: self._load_one(rid, s) for rid, s in self._plan(desired)})

    async def apply(self, desired: Desired) -> None:
        """Load new releases in a thread while serving, then swap."""
        loaded: dict[str, Predictor | None] = {}
        for rid, spec in self._plan(desired):
            loaded[rid] = await asyncio.to_thread(self._load_one, rid, spec)
        self._swap(desired, loaded)

    def write_ack(self) -> None:
        body = {
            "pid": self.pid,
            "version": self.version,
            "loaded": sorted(self.app.routing.releases),
            "errors": self.errors,
            "live": list(self.app.routing.live()),
            "mirror": self.app.routing.mirrored(),
            "at": time.time(),
            "beat": time.time(),
            "hung": self.app.hung(),
            "shadow_dropped": self.app.shadow_dropped,
        }
        write_atomic(self.paths.ack(self.pid), orjson.dumps(body), mode=0o644)

    async def watch(self) -> None:
        last: tuple[int, int, int] | None = None
        next_flush = 0.0
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if os.getppid() != self.parent:
                log.warning("worker %d: supervisor gone, exiting", self.pid)
                self.server.should_exit = True
                return
            try:
                st = os.stat(self.paths.desired)
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                key = None
            if key is not None and key != last:
                last = key
                desired = read_desired(self.paths)
                if desired is not None and desired.version != self.version:
                    try:
                        await self.apply(desired)
                    except Exception:
                        log.exception("worker %d: applying version %d failed", self.pid, desired.version)
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + FLUSH_INTERVAL_S
                try:
                    self.app.recorder.flush()
                    self.write_ack()
                except OSError as e:
                    log.warning("worker %d: metrics flush or heartbeat failed: %s", self.pid, e)

    async def serve(self, sock: socket.socket) -> None:
        from deployer.local.drain import DrainingServer, config

        self.server = DrainingServer(config(self.app))
        watcher = asyncio.create_task(self.watch())
        try:
            await self.server.serve(sockets=[sock])
        finally:
            watcher.cancel()
            self.app.recorder.flush()


def run_worker(paths: Paths, sock: socket.socket, parent: int) -> int:
    """Body of a forked worker; returns the exit code."""
    die_with_parent(parent)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    worker = Worker(paths, parent)
    desired = read_desired(paths)
    if desired is not None:
        worker.apply_now(desired)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(worker.serve(sock))
    return 0
