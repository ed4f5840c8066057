"""Which ledger a command uses, from ``--state``, ``spec.state``, ``DEPLOYER_STATE`` or the default.

A state is a SQLite file path (``ledger.db``, ``sqlite:///abs/ledger.db``) or a URI whose scheme names
an object store: ``file`` (built in, :mod:`deployer.ledgers.files`), and ``s3``, ``gs``, ``az`` from the
provider packages, registered under the ``deployer.ledgers`` entry point group
(``s3 = "deployer_aws.ledger:S3Objects"``). Precedence: an explicit ``--state`` (or ``spec.state``),
then ``$DEPLOYER_STATE``, then ``$DEPLOYER_HOME/ledger.db``.
"""

from __future__ import annotations

import importlib
import os
from functools import cache
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import unquote, urlsplit

from deployer.errors import ProviderNotFoundError, SpecError
from deployer.paths import home, ledger_path
from deployer.protocols import LedgerObjects, LedgerStore

GROUP = "deployer.ledgers"
HINTS = {
    "s3": "pip install mldeployer-aws",
    "gs": "pip install mldeployer-gcp",
    "az": "pip install mldeployer-azure",
}
"""Install hints of the object stores that live in provider packages."""
SCHEMES = ("file", *HINTS)


def resolve(state: str | None = None) -> str:
    """The state a command uses: ``state``, else ``$DEPLOYER_STATE``, else the default SQLite file."""
    return state or os.environ.get("DEPLOYER_STATE") or str(home() / "ledger.db")


def scheme(state: str) -> str:
    """The object store scheme of ``state``, or ``"sqlite"`` for a file path."""
    parts = urlsplit(state)
    return parts.scheme if parts.scheme and len(parts.scheme) > 1 else "sqlite"


def open_store(state: str | None = None) -> LedgerStore:
    """Open the ledger ``state`` names (see :func:`resolve`). No network call until it is used."""
    where = resolve(state)
    kind = scheme(where)
    if kind == "sqlite":
        from deployer.ledger import Ledger

        path = unquote(urlsplit(where).path) if where.startswith("sqlite:") else where
        return Ledger(ledger_path(path))
    from deployer.ledgers.objects import ObjectLedger

    return ObjectLedger(open_objects(where))


def open_objects(uri: str) -> LedgerObjects:
    """The :class:`LedgerObjects` for ``uri``; a typed error naming the package to install when missing."""
    kind = scheme(uri)
    if kind == "file":
        from deployer.ledgers.files import FileObjects

        return FileObjects(uri)
    target = _entry_points().get(kind)
    if target is None:
        if kind in HINTS:
            raise ProviderNotFoundError(f"no installed package keeps a ledger at {kind}:// URIs", hint=HINTS[kind])
        raise SpecError(
            "state", f"unsupported ledger URI scheme {kind!r} in {uri!r}", fix=f"use one of: {', '.join(SCHEMES)}"
        )
    module, _, attr = target.partition(":")
    try:
        cls: Any = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ProviderNotFoundError(
            f"the {kind}:// ledger failed to import: {e}", hint=HINTS.get(kind, f"reinstall {module}")
        ) from e
    objects: LedgerObjects = cls(uri)
    return objects


@cache
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}
