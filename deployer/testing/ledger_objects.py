"""Checks every :class:`~deployer.protocols.LedgerObjects` implementation must pass, and a race.

The single-process checks take a store on an empty prefix; :func:`race` starts processes that each build
the store from its class path and URI (the environment carries the emulator's address and credentials)
and race on one key per round. A cloud package's tests run these against its emulator or fake::

    class TestS3LedgerObjects(ledger_objects.LedgerObjectsChecks): ...   # with a ``store`` fixture

    def test_race(uri):
        ledger_objects.race("deployer_aws.ledger:S3LedgerObjects", uri).check()
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import queue
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import ANY

import pytest

from deployer.protocols import LedgerObjects


def check_create_once(store: LedgerObjects) -> None:
    """create twice: the second answers None and the first's bytes stay; read gives bytes and version."""
    assert store.read("k/one") is None
    v1 = store.create("k/one", b"first")
    assert v1, "create of a new key returns its version"
    assert store.create("k/one", b"second") is None
    assert store.read("k/one") == (b"first", v1)


def check_replace_stale(store: LedgerObjects) -> None:
    """replace with the current version wins with a new version; with a stale one (or on a key that is
    gone) it answers None and writes nothing."""
    v1 = store.create("k/rep", b"v1")
    assert v1
    v2 = store.replace("k/rep", b"v2", v1)
    assert v2 and v2 != v1
    assert store.replace("k/rep", b"stale", v1) is None
    assert store.read("k/rep") == (b"v2", v2)
    assert store.delete("k/rep", v2)
    assert store.replace("k/rep", b"gone", v2) is None
    assert store.read("k/rep") is None


def check_delete_stale(store: LedgerObjects) -> None:
    """delete with a stale version answers False and keeps the object; with the current one, or
    unconditionally, it deletes; a key already gone answers True."""
    v1 = store.create("k/del", b"v1")
    assert v1
    v2 = store.replace("k/del", b"v2", v1)
    assert v2
    assert store.delete("k/del", v1) is False
    assert store.read("k/del") == (b"v2", v2)
    assert store.delete("k/del", v2) is True
    assert store.read("k/del") is None
    assert store.delete("k/del", v2) is True
    assert store.delete("k/del") is True
    v3 = store.create("k/del", b"v3")
    assert v3 and store.delete("k/del") is True and store.read("k/del") is None


def check_list(store: LedgerObjects, count: int) -> list[str]:
    """``count`` keys under one prefix and two beside it: list returns exactly the prefix's, sorted."""
    names = [f"l/a/{i:04d}" for i in range(count)]
    for name in reversed(names):
        assert store.create(name, name.encode())
    assert store.create("l/b/0000", b"x") and store.create("l/ab", b"y")
    assert store.list("l/a/") == names
    assert store.list("l/a") == [*names, "l/ab"]
    assert store.list("nothing/") == []
    return names


def check_prefixes_isolate(one: LedgerObjects, two: LedgerObjects) -> None:
    """Two stores on sibling prefixes of one bucket: the same key is two objects, each listing sees its own."""
    assert one.create("x", b"1") and two.create("x", b"2")
    assert one.list("") == ["x"] and two.list("") == ["x"]
    assert [one.read("x"), two.read("x")] == [(b"1", ANY), (b"2", ANY)]


class LedgerObjectsChecks:
    """The single-process checks as tests: subclass (``class TestS3LedgerObjects(LedgerObjectsChecks)``) and
    supply a ``store`` fixture on an empty prefix."""

    def test_create_twice_the_second_is_refused(self, store: LedgerObjects) -> None:
        check_create_once(store)

    def test_replace_with_a_stale_version_writes_nothing(self, store: LedgerObjects) -> None:
        check_replace_stale(store)

    def test_delete_with_a_stale_version_deletes_nothing(self, store: LedgerObjects) -> None:
        check_delete_stale(store)


class CloudStoreTiming:
    """Mix in before :class:`deployer.testing.ledgers.LedgerConformance` for a store reached through a cloud
    SDK over HTTP, where every call costs milliseconds of SDK work instead of a file operation:

    * The dead-holder test gives the holder process a 1.5 s lease; a process that imports a cloud SDK and
      takes the lease over HTTP can spend longer than that between taking it and dying on a busy machine,
      so the lease would expire before the test looks. It runs with a lease of :attr:`LEASE_S`.
    * The 8-process race runs :attr:`RACE_ROUNDS` rounds, not the suite's 200: each round is dozens of
      contended conditional writes (every loser of an append re-reads and re-writes), so 200 rounds take
      minutes of SDK time per store. The primitive's own race (:func:`race`, 200 rounds) covers the
      atomicity the ledger's race relies on."""

    LEASE_S = "8"
    RACE_ROUNDS = 10

    @pytest.fixture(autouse=True)
    def _cloud_race_rounds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from deployer.testing import ledgers

        monkeypatch.setattr(ledgers, "RACE_ROUNDS", self.RACE_ROUNDS)

    def test_dead_holder_elsewhere_blocks_until_expiry_then_takeover_is_journaled(
        self, store: Any, ledger_state: str, monkeypatch: Any
    ) -> None:
        lease_s = self.LEASE_S

        class LongerLease:
            def setenv(self, name: str, value: str, prepend: str | None = None) -> None:
                monkeypatch.setenv(name, lease_s if name == "DEPLOYER_LEASE_S" else value, prepend)

            def __getattr__(self, name: str) -> Any:
                return getattr(monkeypatch, name)

        test = super().test_dead_holder_elsewhere_blocks_until_expiry_then_takeover_is_journaled  # type: ignore[misc]
        test(store, ledger_state, LongerLease())


@dataclass
class RaceResult:
    """Who won each create and each replace of :func:`race` (worker indexes, by key), and each key's final bytes."""

    rounds: int
    created: dict[int, list[int]] = field(default_factory=dict)
    replaced: dict[int, list[int]] = field(default_factory=dict)
    final: dict[int, bytes | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Exactly one winner of each create and of each replace, and each key holds its replace winner's bytes."""
        assert not self.errors, self.errors[:3]
        for r in range(self.rounds // 2):
            assert len(self.created.get(r, [])) == 1, f"key {r}: create winners {self.created.get(r)}"
            assert len(self.replaced.get(r, [])) == 1, f"key {r}: replace winners {self.replaced.get(r)}"
            assert self.final[r] == _payload(self.replaced[r][0], "replace"), f"key {r}: {self.final[r]!r}"


def _payload(worker: int, what: str) -> bytes:
    return f"{worker}:{what}".encode()


def load(path: str) -> Callable[..., LedgerObjects]:
    """``"package.module:Class"`` -> the class."""
    module, _, name = path.partition(":")
    cls: Callable[..., LedgerObjects] = getattr(importlib.import_module(module), name)
    return cls


def _worker(
    path: str,
    uri: str,
    index: int,
    rounds: int,
    barrier: Any,
    slot: Any,
    results: Any,
) -> None:
    created: list[int] = []
    replaced: list[int] = []
    error = ""
    try:
        store = load(path)(uri)
        for r in range(rounds):
            key = f"race/{r // 2:04d}"
            barrier.wait(60)
            if r % 2 == 0:
                version = store.create(key, _payload(index, "create"))
                if version is not None:
                    created.append(r // 2)
                    slot.value = version.encode()
            elif store.replace(key, _payload(index, "replace"), slot.value.decode()) is not None:
                replaced.append(r // 2)
    except Exception:
        error = f"worker {index}: {traceback.format_exc()}"
        barrier.abort()
    results.put((index, created, replaced, error))


def race(path: str, uri: str, *, workers: int = 8, rounds: int = 200, timeout_s: float = 100) -> RaceResult:
    """``workers`` processes, each with its own store ``path(uri)``, race every round (all start together
    after a barrier): even rounds to ``create`` one new key, odd rounds to ``replace`` that key at the version
    the create winner got. Forked (they inherit the imported SDKs, not a client: each builds its own
    store) and stopped by ``timeout_s`` at the latest."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(workers)
    slot = ctx.Array("c", 1024)
    results: Any = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(path, uri, i, rounds, barrier, slot, results), daemon=True)
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    out = RaceResult(rounds)
    try:
        for _ in procs:
            try:
                index, created, replaced, error = results.get(timeout=timeout_s)
            except queue.Empty:
                out.errors.append(f"a worker sent nothing within {timeout_s} s")
                break
            if error:
                out.errors.append(error)
            for r in created:
                out.created.setdefault(r, []).append(index)
            for r in replaced:
                out.replaced.setdefault(r, []).append(index)
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)
    store = load(path)(uri)
    for r in range(rounds // 2):
        got = store.read(f"race/{r:04d}")
        out.final[r] = got[0] if got else None
    return out


__all__ = [
    "LedgerObjectsChecks",
    "CloudStoreTiming",
    "RaceResult",
    "check_create_once",
    "check_delete_stale",
    "check_list",
    "check_prefixes_isolate",
    "check_replace_stale",
    "load",
    "race",
]
