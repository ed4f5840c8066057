"""The endpoint lock as a lease, on any :class:`~deployer.protocols.LedgerObjects` (both ledgers use it).

A lease names its holder (actor, host, pid, operation) and expires ``DEPLOYER_LEASE_S`` seconds (default
60) after it was last renewed; a background thread renews it every third of that while the operation
runs, so a long rollout keeps it. Taking it is one conditional write:

* no lease object: ``create`` (If-None-Match); of several racing processes exactly one wins;
* a live lease: :class:`~deployer.errors.LockedError` naming the holder and when the lease runs out;
* an expired lease, or one whose holder is provably gone (same machine, same pid namespace, and its
  pid is dead or now a different process): ``replace`` at the version read, and the takeover is
  journaled with both holders. A reused pid never proves a holder dead: the process start time must
  match too, and a holder on another machine (or in another container) is waited out until expiry.

A holder whose renewal fails (it was paused past its expiry and someone took over) loses the lease:
its next ledger write raises ``LockedError`` instead of writing over the new holder's work. Expiry is
judged by the wall clocks of the machines involved: keep them in sync (NTP) and the lease well above
their skew.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from deployer.errors import LedgerError, LockedError
from deployer.ledgers.rows import Lease
from deployer.procs import pid_alive
from deployer.protocols import LedgerObjects

DEFAULT_LEASE_S = 60.0
"""Lease length; renewed every third of it (20 s) while the holder runs."""


def lease_seconds() -> float:
    """``$DEPLOYER_LEASE_S`` or :data:`DEFAULT_LEASE_S`."""
    raw = os.environ.get("DEPLOYER_LEASE_S")
    try:
        value = float(raw) if raw else DEFAULT_LEASE_S
    except ValueError:
        raise LedgerError(f"DEPLOYER_LEASE_S={raw!r} is not a number", hint="set it to seconds, e.g. 60") from None
    if value <= 0:
        raise LedgerError(f"DEPLOYER_LEASE_S={raw!r} must be positive", hint="set it to seconds, e.g. 60")
    return value


def machine_id() -> str:
    """This machine and pid namespace: ``$DEPLOYER_MACHINE_ID``, else host, boot id and pid namespace."""
    explicit = os.environ.get("DEPLOYER_MACHINE_ID")
    if explicit:
        return explicit
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    ns = ""
    with contextlib.suppress(OSError):
        ns = str(os.stat("/proc/self/ns/pid").st_ino)
    return f"{socket.gethostname()}/{boot}/{ns}"


def process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), or "" when unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        return ""


def holder_gone(lease: Lease) -> bool:
    """True only when the holder provably no longer runs (same machine and pid namespace)."""
    if lease.machine != machine_id():
        return False
    return not pid_alive(lease.pid) or (bool(lease.started) and process_start(lease.pid) != lease.started)


JournalFn = Callable[..., int]
"""The ledger's ``journal(endpoint, release, step, phase, detail=...)``: takeovers and forced unlocks go there."""


class Leases:
    """Endpoint leases stored as objects ``key(endpoint)`` in ``objects``."""

    def __init__(self, objects: LedgerObjects, key: Callable[[str], str], actor: str, journal: JournalFn) -> None:
        self.objects = objects
        self.key = key
        self.actor = actor
        self.journal = journal
        self.held: dict[str, Renewer] = {}

    def current(self, endpoint: str) -> Lease | None:
        """The lease object as stored (it may have expired), or None."""
        got = self.objects.read(self.key(endpoint))
        return Lease.load(got[0]) if got else None

    def check(self, endpoint: str) -> None:
        """Raise LockedError when this process held ``endpoint``'s lease and lost it."""
        renewer = self.held.get(endpoint)
        if renewer is not None and renewer.lost is not None:
            raise LockedError(endpoint, f"{renewer.lost} (this process's lease was lost)")

    @contextlib.contextmanager
    def hold(self, endpoint: str, operation: str) -> Iterator[Lease]:
        """Take the lease for the block, renewing it in the background; release it after."""
        length = lease_seconds()
        now = time.time()
        mine = Lease(
            token=uuid.uuid4().hex,
            actor=self.actor,
            host=socket.gethostname(),
            machine=machine_id(),
            pid=os.getpid(),
            started=process_start(os.getpid()),
            operation=operation,
            acquired_at=now,
            expires_at=now + length,
        )
        key = self.key(endpoint)
        version = self._take(endpoint, key, mine)
        renewer = Renewer(self.objects, key, mine, version, length)
        self.held[endpoint] = renewer
        renewer.start()
        try:
            yield mine
        finally:
            renewer.stop()
            self.held.pop(endpoint, None)
            if renewer.lost is None:
                with contextlib.suppress(Exception):
                    self.objects.delete(key, renewer.version)

    def _take(self, endpoint: str, key: str, mine: Lease) -> str:
        for _ in range(50):
            got = self.objects.read(key)
            if got is None:
                version = self.objects.create(key, mine.dump())
                if version is not None:
                    return version
                continue
            old = Lease.load(got[0])
            if old.live(time.time()) and not holder_gone(old):
                raise LockedError(endpoint, old.holder)
            version = self.objects.replace(key, mine.dump(), got[1])
            if version is not None:
                self._journal(endpoint, old, mine, "taken_over")
                return version
        raise LedgerError(f"the lock of {endpoint!r} changed hands 50 times while taking it", hint="retry")

    def force_release(self, endpoint: str) -> Lease | None:
        """Delete the lease whoever holds it (``deployer unlock --force``); journal it; return the old one."""
        got = self.objects.read(self.key(endpoint))
        if got is None:
            return None
        old = Lease.load(got[0])
        self.objects.delete(self.key(endpoint))
        now = time.time()
        me = replace(old, token="", actor=self.actor, pid=os.getpid(), operation="unlock --force", acquired_at=now)
        self._journal(endpoint, old, replace(me, expires_at=now), "force_unlocked")
        return old

    def _journal(self, endpoint: str, old: Lease, new: Lease, how: str) -> None:
        detail = {"stale_holder": old.holder, "old": old.to_dict(), "new": new.to_dict()}
        self.journal(endpoint, None, "lock", how, detail=detail)


class Renewer(threading.Thread):
    """Extends a held lease every third of its length until stopped; notes when it was lost."""

    def __init__(self, objects: LedgerObjects, key: str, lease: Lease, version: str, length: float) -> None:
        super().__init__(daemon=True, name=f"lease-{key}")
        self.objects = objects
        self.key = key
        self.lease = lease
        self.version = version
        self.length = length
        self.lost: str | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.length / 3):
            renewed = replace(self.lease, expires_at=time.time() + self.length)
            try:
                version = self.objects.replace(self.key, renewed.dump(), self.version)
            except Exception:  # noqa: BLE001 - a failed renewal is retried; expiry is the backstop
                continue
            if version is None:
                got = self.objects.read(self.key)
                self.lost = Lease.load(got[0]).holder if got else "nobody (the lock was removed)"
                return
            self.lease, self.version = renewed, version

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=10)
