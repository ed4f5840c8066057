"""The supervisor of one local endpoint: binds the socket once and keeps N workers running.

Started detached by the provider (``python -m deployer.local.supervisor <endpoint_dir>``) or in the
foreground by ``deployer serve`` (:func:`run_foreground`). It:

1. takes an exclusive ``flock`` on ``supervisor.lock`` and writes its pid in it: the lock, held for
   the supervisor's whole life, is what says it is alive (a second supervisor exits with code 3);
2. imports the flavor libraries and the HTTP stack (the flavor import starts first, in a
   background thread, and is joined before any fork, so forking happens single-threaded);
3. binds the listening socket (``port`` 0: a free port the first time, then the one remembered in
   ``listen.json``, which outlives stops, kills and reboots; when another process holds it the
   supervisor exits with code 5 rather than move the endpoint) and writes ``supervisor.pid`` and
   ``state.json``;
4. forks ``desired.workers`` workers (:mod:`deployer.local.worker`) that inherit the socket and the
   preloaded modules, restarts crashed ones (with backoff in a crash loop), forks or SIGTERMs
   workers when ``desired.json`` changes the count;
5. recycles a hung worker: one whose heartbeat says a prediction ran past its release's recycle
   limit (``2 x serving.timeout_s``), or whose heartbeat stopped for ``SILENT_S``. A replacement is
   forked at once and the hung worker is stopped gracefully (its other requests finish; SIGKILL
   after ``STOP_GRACE_S``), so the endpoint drops no request while the stuck thread dies with it;
6. on SIGTERM / SIGINT stops the workers gracefully (SIGKILL after a bound), removes its pid file
   and exits 0.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

import orjson

from deployer.local.state import (
    LOCK_RETRY_S,
    Desired,
    Paths,
    read_acks,
    read_desired,
    read_pid,
    remembered_port,
    supervisor_pid,
    write_atomic,
)

log = logging.getLogger("deployer.local.supervisor")

TICK_S = 0.05
STOP_GRACE_S = 12.0
CRASH_WINDOW_S = 3.0
EXIT_LOCKED = 3
EXIT_BAD_STATE = 4
EXIT_PORT_IN_USE = 5
PORT_WAIT_S = 2.0
"""How long the remembered port may stay in use (a killed endpoint's workers letting go) before it is a conflict."""
RETENTION_S = 900
HUNG_CHECK_S = 0.5
SILENT_S = 15.0
"""A worker whose heartbeat is older than this (its event loop is blocked) is recycled."""


def _preload_flavors(flavors: set[str]) -> None:
    from deployer.serving.loader import preload

    preload(flavors)


def _preload_releases(desired: Desired) -> None:
    """Import each release's flavor library and unpickle sklearn models (see ``preload_model``)."""
    from deployer.serving.loader import preload_model

    for spec in desired.releases.values():
        preload_model(spec.path, spec.flavor)


def start_preload(desired: Desired) -> threading.Thread:
    """Start :func:`_preload_releases` in a background thread; join it before forking."""
    thread = threading.Thread(target=_preload_releases, args=(desired,), name="preload", daemon=True)
    thread.start()
    return thread


def _preload_http() -> None:
    import httptools  # noqa: F401
    import orjson  # noqa: F401
    import uvicorn  # noqa: F401
    import uvicorn.lifespan.off  # noqa: F401
    import uvicorn.protocols.http.httptools_impl  # noqa: F401
    import uvloop  # noqa: F401

    import deployer.local.drain  # noqa: F401
    import deployer.local.worker  # noqa: F401


def bind(host: str, port: int, wait_s: float = 0.0) -> socket.socket:
    """A socket bound to ``host:port`` (``SO_REUSEADDR``), not yet listening.

    While the port is in use, retries for ``wait_s``: the workers of a supervisor that was just
    killed let go of the listening socket within a tick of noticing.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + wait_s
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return sock
        except OSError as e:
            sock.close()
            if e.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class Supervisor:
    """The supervisor loop for the endpoint directory ``root``."""

    def __init__(self, root: Path | str, importer: threading.Thread | None = None) -> None:
        self.paths = Paths(root)
        self.importer = importer
        self.workers: dict[int, float] = {}
        self.draining: dict[int, float] = {}
        self.stop = False
        self.crashes = 0
        self.next_spawn = 0.0
        self.last_exit: str | None = None
        self.desired: Desired | None = None
        self.desired_key: tuple[int, int, int] | None = None
        self.sock: socket.socket | None = None
        self.lock_fd: int | None = None
        self.preloaded: set[str] = set()
        self.next_prune = 0.0
        self.next_hung_check = 0.0
        self.recycled = 0
        self._state: bytes = b""

    # -- startup --------------------------------------------------------------------------
    def _lock(self) -> bool:
        """Take the endpoint's lock for this process's life and write our pid in it; False when another holds it."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:  # not a reader's probe: another supervisor
                    os.close(fd)
                    return False
                time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.lock_fd = fd
        return True

    def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        t0 = time.monotonic()
        desired = read_desired(self.paths)
        if desired is None:
            log.error("no desired.json in %s; nothing to serve", self.paths.root)
            return EXIT_BAD_STATE
        flavors = {r.flavor for r in desired.releases.values()}
        importer = self.importer or start_preload(desired)
        if not self._lock():
            log.error("another supervisor (pid %s) already serves %s", supervisor_pid(self.paths), self.paths.root)
            importer.join()
            return EXIT_LOCKED
        self.paths.workers.mkdir(exist_ok=True)
        self.paths.metrics.mkdir(exist_ok=True)
        for stale in self.paths.workers.glob("*.json"):
            stale.unlink(missing_ok=True)
        self._prune_metrics()
        remembered = remembered_port(self.paths, desired.host)
        port = desired.port or remembered or 0
        try:
            self.sock = bind(desired.host, port, wait_s=PORT_WAIT_S if port == remembered else 0.0)
        except OSError as e:
            importer.join()
            if e.errno == errno.EADDRINUSE and port == remembered:
                log.error(
                    "cannot listen on %s:%d, the port this endpoint keeps: another process holds it (%s); "
                    "stop that process, or destroy the endpoint to get a new port", desired.host, port, e,
                )  # fmt: skip
                return EXIT_PORT_IN_USE
            log.error("cannot listen on %s:%s: %s", desired.host, port, e)
            return EXIT_BAD_STATE
        self.sock.listen(2048)
        self.sock.set_inheritable(True)
        bound = self.sock.getsockname()[1]
        if bound != remembered:
            write_atomic(self.paths.listen, orjson.dumps({"host": desired.host, "port": bound}), mode=0o644)
        write_atomic(self.paths.pid, f"{os.getpid()}\n".encode(), mode=0o644)
        self._apply_desired(desired, preload=False)
        _preload_http()
        importer.join()
        self.preloaded |= flavors
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        log.info(
            "supervisor %d serving %s on %s (ready to fork in %.0f ms)",
            os.getpid(), desired.endpoint, self.url, (time.monotonic() - t0) * 1000,
        )  # fmt: skip
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _prune_metrics(self) -> None:
        """Delete metric files of workers that exited longer ago than the retention."""
        self.next_prune = time.monotonic() + 60
        for old in self.paths.metrics.glob("*.json"):
            with contextlib.suppress(OSError):
                if time.time() - old.stat().st_mtime > RETENTION_S:
                    old.unlink()

    @property
    def url(self) -> str:
        assert self.sock is not None
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop = True

    # -- the loop -------------------------------------------------------------------------
    def _apply_desired(self, desired: Desired, preload: bool = True) -> None:
        if preload:
            flavors = {r.flavor for r in desired.releases.values()} - self.preloaded
            if flavors:
                _preload_flavors(flavors)
                self.preloaded |= flavors
            from deployer.serving.loader import forget_preloaded

            forget_preloaded({r.path for r in desired.releases.values()})
        self.desired = desired

    def _check_desired(self) -> None:
        try:
            st = os.stat(self.paths.desired)
        except FileNotFoundError:
            return
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self.desired_key:
            return
        desired = read_desired(self.paths)
        if desired is not None:
            self.desired_key = key
            self._apply_desired(desired)

    def _loop(self) -> None:
        while not self.stop:
            self._reap()
            self._check_desired()
            if time.monotonic() >= self.next_hung_check:
                self._recycle_hung()
            self._adjust()
            self._write_state()
            if time.monotonic() >= self.next_prune:
                self._prune_metrics()
            time.sleep(TICK_S)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            started = self.workers.pop(pid, None)
            self.draining.pop(pid, None)
            self.paths.ack(pid).unlink(missing_ok=True)
            if started is None or self.stop:
                continue
            self.last_exit = f"worker {pid} exited with code {code}"
            log.warning("%s; restarting", self.last_exit)
            if time.monotonic() - started < CRASH_WINDOW_S:
                self.crashes += 1
                self.next_spawn = time.monotonic() + min(5.0, 0.1 * 2**self.crashes)
            else:
                self.crashes = 0

    def _recycle_hung(self) -> None:
        """Stop workers that report a hung prediction or a silent heartbeat; ``_adjust`` replaces them."""
        self.next_hung_check = time.monotonic() + HUNG_CHECK_S
        now = time.time()
        for pid, ack in read_acks(self.paths).items():
            if pid not in self.workers:
                continue
            beat = ack.get("beat")
            why = ack.get("hung")
            if not why and isinstance(beat, int | float) and now - beat > SILENT_S:
                why = f"no heartbeat for {now - beat:.0f}s"
            if why:
                log.warning("worker %d is hung (%s); replacing it", pid, why)
                del self.workers[pid]
                self.draining[pid] = time.monotonic()
                self.recycled += 1
                self.last_exit = f"worker {pid} recycled: {why}"
                self._kill(pid, signal.SIGTERM)

    def _adjust(self) -> None:
        assert self.desired is not None
        target = max(1, self.desired.workers)
        now = time.monotonic()
        if self.crashes and self.workers and all(now - t > CRASH_WINDOW_S for t in self.workers.values()):
            self.crashes = 0
        while len(self.workers) < target and now >= self.next_spawn:
            self._spawn()
        while len(self.workers) > target:
            pid = max(self.workers, key=lambda p: self.workers[p])
            del self.workers[pid]
            self.draining[pid] = now
            self._kill(pid, signal.SIGTERM)
        for pid, since in list(self.draining.items()):
            if now - since > STOP_GRACE_S:
                self._kill(pid, signal.SIGKILL)

    def _spawn(self) -> None:
        assert self.sock is not None
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            code = 1
            try:
                if self.lock_fd is not None:
                    os.close(self.lock_fd)
                from deployer.local.worker import run_worker

                code = run_worker(self.paths, self.sock, parent)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        self.workers[pid] = time.monotonic()

    @staticmethod
    def _kill(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _write_state(self) -> None:
        assert self.sock is not None and self.desired is not None
        host, port = self.sock.getsockname()[:2]
        state = {
            "pid": os.getpid(),
            "host": host,
            "port": port,
            "url": self.url,
            "workers": sorted(self.workers),
            "draining": sorted(self.draining),
            "desired_workers": max(1, self.desired.workers),
            "version": self.desired.version,
            "crash_loop": self.crashes >= 3,
            "last_exit": self.last_exit,
            "recycled": self.recycled,
        }
        body = orjson.dumps(state)
        if body != self._state:
            write_atomic(self.paths.state, body, mode=0o644)
            self._state = body

    # -- shutdown -------------------------------------------------------------------------
    def _shutdown(self) -> None:
        log.info("supervisor %d stopping %d worker(s)", os.getpid(), len(self.workers) + len(self.draining))
        self.stop = True
        for pid in list(self.workers) + list(self.draining):
            self._kill(pid, signal.SIGTERM)
        self.draining.update({p: time.monotonic() for p in self.workers})
        self.workers.clear()
        deadline = time.monotonic() + STOP_GRACE_S
        while self.draining and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for pid in list(self.draining):
            self._kill(pid, signal.SIGKILL)
        while self.draining:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.draining.pop(pid, None)
        if self.sock is not None:
            self.sock.close()
        for f in self.paths.workers.glob("*.json"):
            f.unlink(missing_ok=True)
        self.paths.state.unlink(missing_ok=True)
        if read_pid(self.paths) == os.getpid():
            self.paths.pid.unlink(missing_ok=True)
        log.info("supervisor %d stopped", os.getpid())


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )


def run_foreground(endpoint_dir: Path | str) -> int:
    """Run the supervisor in this process (``deployer serve``): logs to stderr, Ctrl-C stops it.

    ``endpoint_dir`` must hold a ``desired.json`` (see :func:`deployer.local.state.write_desired`).
    Returns the exit code (0 after a clean stop, 3 when another supervisor holds the endpoint).
    """
    setup_logging()
    return Supervisor(endpoint_dir).run()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m deployer.local.supervisor ENDPOINT_DIR\n")
        return 2
    return run_foreground(args[0])


if __name__ == "__main__":
    sys.exit(main())
