"""Output conventions, as a shell user meets them: a command's result on stdout (so it pipes), progress
and diagnostics on stderr, nothing cut when piped, and every problem of a bad spec named at once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import deployer
from deployer.spec import Spec

from .models import e2e_home_fixture, model_spec, spec_dict, write_spec  # noqa: F401 - a fixture

ACTOR = "nightly-retraining-pipeline/run-2026-12-02T09:00:00Z@build-host-with-a-long-name.example.internal"


def sh(command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in bash with ``deployer`` meaning this interpreter's CLI, stdout a pipe (not a terminal)."""
    prelude = f'deployer() {{ "{sys.executable}" -m deployer "$@"; }}\n'
    return subprocess.run(["bash", "-c", prelude + command], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "80"})


@pytest.mark.timeout(90)
def test_status_and_history_pipe_whole(e2e_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYER_ACTOR", ACTOR)
    name = "piped"
    for tag in ("v1", "v2"):
        deployer.apply(Spec.model_validate(spec_dict(name, model_spec("healthy", e2e_home.parent, tag))))

    grep = sh(f"deployer status {name} | grep live")
    assert grep.returncode == 0, grep.stderr
    assert "live: r0002" in grep.stdout

    status = sh(f"deployer status {name} 2>/dev/null")
    assert status.returncode == 0 and "None" not in status.stdout and "1 replica" in status.stdout

    history = sh(f"deployer history {name} | cat")
    rows = [line.split("\t") for line in history.stdout.splitlines()]
    assert rows[0][:5] == ["release", "status", "outcome", "actor", "created"], history.stdout
    assert [r[0] for r in rows[1:]] == ["r0001", "r0002"]
    assert all(r[3] == ACTOR and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r[4]) for r in rows[1:])

    as_json = sh(f"deployer status {name} --json")
    assert json.loads(as_json.stdout.splitlines()[-1])["live"] == "r0002"


@pytest.mark.timeout(60)
def test_a_spec_with_two_problems_names_both(tmp_path: Path) -> None:
    bad = write_spec(tmp_path / "bad.yaml", {"name": "Bad Name", "model": {"path": "m.joblib"},
                                             "resources": {"replicas": 0}})
    human = sh(f"deployer plan {bad}")
    assert human.returncode == 2 and human.stdout == ""
    [line] = human.stderr.strip().splitlines()
    assert "2 problems" in line and "name:" in line and "resources.replicas:" in line
    as_json = sh(f"deployer plan {bad} --json")
    err = json.loads(as_json.stdout.splitlines()[-1])
    assert as_json.returncode == 2 and err["kind"] == "error"
    assert [p["field"] for p in err["problems"]] == ["name", "resources.replicas"]
