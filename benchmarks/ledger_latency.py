"""Ledger latency: ``status`` and ``history`` on an endpoint with a 1,000-release history, on the shared
ledger (``file://``, and any other ledger URI given) against the SQLite ledger measured in the same run
(goal: <= 3x), and the store calls one journaled step costs on the shared ledger (goal: one conditional
write).

The history is written once into SQLite through the ledger API (each release with a started/done
journal pair, the previous release superseded: a realistic head), then copied to each shared ledger
with ``ledger push``. ``status`` is the real ``deployer.api.status`` (local provider, endpoint
destroyed so the provider is not asked); ``history`` is ``deployer.api.history``. Best of ``--rounds``.

Usage: python benchmarks/ledger_latency.py [--releases 1000] [--rounds 7] [--state s3://bucket/prefix ...]
(extra ``--state`` URIs need their store's package installed and its emulator's endpoint in the env).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any


def best(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def fill(state: str, releases: int) -> None:
    from deployer.ledgers.select import open_store
    from deployer.records import Release, Traffic

    store = open_store(state)
    store.upsert_endpoint("churn", "local", {"provider": "local"})
    for i in range(1, releases + 1):
        rid = f"r{i:04d}"
        store.add_release(Release(id=rid, endpoint="churn", fingerprint=f"fp{i}"), spec_hash="h")
        store.journal("churn", rid, "deploy_release", "started")
        with store.transaction():
            if i > 1:
                store.set_release("churn", f"r{i - 1:04d}", status="superseded", running=False)
            store.set_release("churn", rid, status="live", outcome="succeeded", finished=True, running=True)
            store.journal("churn", rid, "promote", "done", detail={"evidence": [{"gate": "errors", "value": 0.0}]})
        store.set_traffic("churn", Traffic.all_to(rid))
    store.mark_destroyed("churn")
    store.close()


def calls_per_step(uri: str) -> dict[str, float]:
    """Store calls per journaled step (mean of 100, compaction included) and of one promotion transaction."""
    from deployer.ledgers.objects import ObjectLedger
    from deployer.ledgers.select import open_objects

    objects = open_objects(uri)
    counts: dict[str, float] = {}
    for name in ("read", "create", "replace", "delete", "list"):
        real = getattr(objects, name)

        def counted(*a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            counts[_name] = counts.get(_name, 0) + 1
            return _real(*a, **k)

        setattr(objects, name, counted)
    store = ObjectLedger(objects)
    steps = 100
    for _ in range(steps):
        store.journal("churn", None, "route", "started")
    step = {k: round(v / steps, 2) for k, v in counts.items()}
    counts.clear()
    with store.transaction():
        store.set_release("churn", "r0999", status="superseded")
        store.set_release("churn", "r1000", status="live")
        store.journal("churn", "r1000", "promote", "done")
    return {**{f"step_{k}": v for k, v in step.items()}, **{f"promotion_{k}": v for k, v in counts.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--releases", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--state", action="append", default=[], help="another shared ledger URI to measure")
    args = ap.parse_args()

    import os

    from deployer import api
    from deployer.ledgers.select import open_store
    from deployer.ledgers.transfer import copy

    work = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    os.environ["DEPLOYER_HOME"] = str(work / "home")
    try:
        base = str(work / "ledger.db")
        t = time.perf_counter()
        fill(base, args.releases)
        print(f"wrote {args.releases} releases to SQLite in {time.perf_counter() - t:.1f} s")
        states = [f"file://{work / 'shared'}", *[f"{s.rstrip('/')}/{uuid.uuid4().hex[:8]}" for s in args.state]]
        for state in states:
            src, dst = open_store(base), open_store(state)
            copy(src, dst, "churn")
            src.close()
            dst.close()
        results: dict[str, dict[str, float]] = {}
        for state in [base, *states]:
            results[state] = {
                "status": best(lambda s=state: api.status("churn", state=s), args.rounds),
                "history": best(lambda s=state: api.history("churn", state=s), args.rounds),
            }
        sqlite = results[base]
        print(f"{'ledger':<48} {'status ms':>10} {'x sqlite':>9} {'history ms':>11} {'x sqlite':>9}")
        for state, r in results.items():
            name = "sqlite" if state == base else state.split("://")[0] + "://" + ("..." if state != base else "")
            print(
                f"{name:<48} {r['status'] * 1000:>10.2f} {r['status'] / sqlite['status']:>9.2f} "
                f"{r['history'] * 1000:>11.2f} {r['history'] / sqlite['history']:>9.2f}"
            )
        for state in states:
            print(f"store calls on {state.split('://')[0]}://: {calls_per_step(state)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
