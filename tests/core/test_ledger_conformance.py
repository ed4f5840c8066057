"""The ledger conformance suite on the two ledgers the core ships: SQLite and ``file://``."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.testing.ledgers import LedgerConformance


class TestSqliteLedger(LedgerConformance):
    @pytest.fixture
    def ledger_state(self, tmp_path: Path) -> str:
        return str(tmp_path / "ledger.db")


class TestFileLedger(LedgerConformance):
    @pytest.fixture
    def ledger_state(self, tmp_path: Path) -> str:
        return f"file://{tmp_path / 'shared-ledger'}"
