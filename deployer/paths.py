"""Where deployer keeps its state on this machine.

``DEPLOYER_HOME`` overrides everything; otherwise ``$XDG_STATE_HOME/deployer`` or
``~/.local/state/deployer``. Below it: ``ledger.db`` (the SQLite ledger, unless ``--state`` /
``DEPLOYER_STATE`` / ``spec.state`` name another one: :mod:`deployer.ledgers.select`), ``digests.db`` (the
per-file sha256 cache) and ``local/`` (the local provider: ``artifacts/`` its content-addressed store,
``cache/`` archives named by URI unpacked, ``endpoints/`` one directory per endpoint with its
supervisor's state and log).
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    explicit = os.environ.get("DEPLOYER_HOME")
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "deployer"


def ledger_path(override: str | None = None) -> Path:
    return Path(override).expanduser() if override else home() / "ledger.db"
