"""``deployer status`` with real processes: a candidate that failed to load leaves the endpoint degraded
(exit 14), named with its reason until retired, each release with its own replicas."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import deployer
from deployer.errors import DeployerError
from deployer.spec import Spec

from .models import e2e_home_fixture, model_spec, spec_dict  # noqa: F401 - a fixture

BROKEN = '''
class Model:
    @classmethod
    def load(cls, path):
        raise RuntimeError("weights file is corrupt")
'''


@pytest.mark.timeout(90)
def test_a_failed_candidate_is_degraded_with_its_reason_and_per_release_replicas(e2e_home: Path) -> None:
    name = "degraded"
    deployer.apply(Spec.model_validate(spec_dict(name, model_spec("healthy", e2e_home.parent, "v1"), replicas=2)))
    broken = e2e_home.parent / "broken"
    broken.mkdir()
    (broken / "broken_model.py").write_text(BROKEN)
    bad = spec_dict(name, {"path": str(broken), "flavor": "python", "entrypoint": "broken_model:Model"}, replicas=2)
    bad["strategy"] = {"type": "canary", "steps": [{"weight": 50, "bake_s": 1}, {"weight": 100, "bake_s": 0}],
                       "ready_timeout_s": 20}
    with pytest.raises(DeployerError):
        deployer.apply(Spec.model_validate(bad))

    s = deployer.status(name)
    rows = {r["id"]: r for r in s.to_dict()["releases"]}
    assert (s.health, s.exit_code) == ("degraded", 14)
    assert rows["r0001"]["replicas"] == 2 and rows["r0001"]["weight"] == 100
    assert rows["r0002"]["status"] == "failed" and "corrupt" in (rows["r0002"]["reason"] or "")
    assert s.to_dict()["replicas"] == 2  # the live release's, not a sum over releases
    proc = subprocess.run([sys.executable, "-m", "deployer", "status", name], capture_output=True, text=True,
                          timeout=30, env=os.environ.copy())
    assert proc.returncode == 14, proc.stdout + proc.stderr
    assert "r0002  failed" in proc.stdout and "corrupt" in proc.stdout and "None" not in proc.stdout
