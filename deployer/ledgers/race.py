"""One racer of the ledger conformance suite's race (:mod:`deployer.testing.ledgers`).

Kept beside the ledgers, not in :mod:`deployer.testing`, so each spawned worker imports only the ledger.
"""

from __future__ import annotations

import os
import time
from typing import Any

from deployer.errors import LockedError
from deployer.ledgers.select import open_store


def race_worker(state: str, endpoint: str, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    """One racer: each round, append a journal entry and try the lock, holding it until all have tried.

    ``won[r]`` is None when this worker held the lock in round ``r``, else the holder its LockedError named.
    """
    try:
        ledger = open_store(state)
        won: list[str | None] = []
        barrier.wait(timeout=120)  # every worker started: the rounds are timed from here
        started = time.monotonic()
        for rnd in range(rounds):
            barrier.wait(timeout=60)
            ledger.journal(endpoint, None, "race", "append", detail={"worker": worker, "round": rnd})
            try:
                with ledger.lock(endpoint, f"race-{worker}"):
                    won.append(None)
                    barrier.wait(timeout=60)
            except LockedError as e:
                won.append(e.holder)
                barrier.wait(timeout=60)
        ledger.close()
        results.put({"worker": worker, "pid": os.getpid(), "won": won, "seconds": time.monotonic() - started})
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the test
        barrier.abort()
        results.put({"worker": worker, "pid": os.getpid(), "error": repr(e)})
