"""The ledger conformance suite on the two ledgers the core ships: SQLite and ``file://``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.testing.ledgers import LedgerConformance


class TestSqliteLedger(LedgerConformance):
    test_objects_conditional_writes = None  # type: ignore[assignment]  # the primitive's check: SQLite is not an object store

    @pytest.fixture
    def ledger_state(self, tmp_path: Path) -> str:
        return str(tmp_path / "ledger.db")


class TestFileLedger(LedgerConformance):
    @pytest.fixture
    def ledger_state(self, tmp_path: Path) -> Iterator[str]:
        # a tmpfs when there is one: same link / lockf / rename semantics, without ext4's flush on every
        # rename-over, so the 200-round race measures the ledger, not the disk
        shm = Path("/dev/shm")
        base = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
        try:
            yield f"file://{base / 'shared-ledger'}"
        finally:
            if base != tmp_path:
                shutil.rmtree(base, ignore_errors=True)
