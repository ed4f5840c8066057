"""Moving an endpoint's history between ledgers, and the audit export.

:func:`export` reads an endpoint's whole history (its row, every release with its evidence, every journal
entry) into plain JSON; :meth:`~deployer.protocols.LedgerStore.load` writes such an export verbatim into
another ledger (ids, actors, times kept), so ``push`` then ``pull`` gives back the same export.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from deployer.errors import NotFoundError
from deployer.protocols import LedgerStore

FORMAT = 1
EVERYTHING = 10**9
"""The journal limit that reads all of it."""


def export(store: LedgerStore, name: str) -> dict[str, Any]:
    """The endpoint's full history as JSON-ready data; NotFoundError when ``store`` does not know it."""
    row = store.endpoint(name)
    if row is None:
        known = ", ".join(e.name for e in store.endpoints()) or "none"
        raise NotFoundError(
            f"no endpoint named {name!r} in the ledger at {store.path} (known: {known})",
            hint="check the name and --state",
        )
    endpoint = {
        **{f.name: getattr(row, f.name) for f in dataclasses.fields(row) if f.name != "traffic"},
        "traffic": dict(row.traffic.weights),
        "mirror": dict(row.traffic.mirror),
    }
    releases = [
        {
            **r.to_dict(),
            "seq": r.seq,
            "artifact_pruned": r.artifact_pruned,
            "release": r.release.model_dump(mode="json"),
        }
        for r in store.releases(name)
    ]
    journal = [_op(o) for o in store.operations(name, limit=EVERYTHING)]
    return {"format": FORMAT, "endpoint": endpoint, "releases": releases, "journal": journal}


def copy(source: LedgerStore, dest: LedgerStore, name: str) -> dict[str, Any]:
    """Copy endpoint ``name``'s history from ``source`` to ``dest`` under the source's lock; return counts."""
    with source.lock(name, "ledger copy"):
        history = export(source, name)
    dest.load(history)
    return {"endpoint": name, "releases": len(history["releases"]), "journal": len(history["journal"])}


def audit(store: LedgerStore, since: float = 0.0, endpoint: str | None = None) -> Iterator[dict[str, Any]]:
    """Every journal entry at or after ``since`` (epoch seconds), per endpoint in name order, oldest first."""
    names = [endpoint] if endpoint else [e.name for e in store.endpoints()]
    for name in names:
        for op in store.operations(name, limit=EVERYTHING):
            if op.at >= since:
                yield {"endpoint": name, **_op(op)}


def _op(op: Any) -> dict[str, Any]:
    return {f.name: getattr(op, f.name) for f in dataclasses.fields(op) if f.name != "endpoint"}
