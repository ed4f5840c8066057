"""The conformance kit every provider runs, plus fault-injection helpers.

A provider's test module subclasses :class:`ProviderConformance` and supplies one fixture,
``conformance_target``, returning a :class:`ConformanceTarget`::

    from deployer.testing import ConformanceTarget, ProviderConformance

    class TestLocal(ProviderConformance):
        @pytest.fixture
        def conformance_target(self, tmp_path, monkeypatch):
            monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
            return ConformanceTarget(target={"provider": "local"}, ledger_path=tmp_path / "ledger.db")

:class:`MemoryProvider` is an in-memory platform honouring the whole provider contract, with
fault injection (:class:`FaultPlan`), for property-based tests of the engine.

Ledger back-ends run :class:`deployer.testing.ledgers.LedgerConformance` the same way, with one fixture
``ledger_state`` (see that module).
"""

from deployer.testing.conformance import ConformanceTarget, ProviderConformance, make_model
from deployer.testing.harness import Crash, Harness, Recorder, crash_after
from deployer.testing.memory import FaultPlan, MemoryProvider, MemoryWorld

__all__ = [
    "ConformanceTarget",
    "Crash",
    "FaultPlan",
    "Harness",
    "MemoryProvider",
    "MemoryWorld",
    "ProviderConformance",
    "Recorder",
    "crash_after",
    "make_model",
]
