"""The exit-code handling of the guard recipes in docs/operations.md, read from the page, never copied.

* systemd: the unit's ``SuccessExitStatus=`` line (0 is always success);
* GitHub Actions: the guard step's ``case $code in ... esac`` line, run by bash with the step's ``env``.

:func:`job_outcomes` says, for one guard exit code, whether each recipe's job passes.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _block(lang: str, marker: str) -> str:
    """The first fenced ``lang`` block of the page that contains ``marker``."""
    for body in re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S):
        if marker in body:
            return str(body)
    raise AssertionError(f"docs/operations.md has no {lang} block with {marker!r}")


def systemd_passes(code: int) -> bool:
    unit = _block("ini", "SuccessExitStatus=")
    found = re.search(r"^SuccessExitStatus=(.*)$", unit, re.M)
    assert found, unit
    return code == 0 or str(code) in found.group(1).split()


def ci_step() -> dict[str, Any]:
    workflow = yaml.safe_load(_block("yaml", "deployer guard"))
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    return next(s for s in steps if "deployer guard" in str(s.get("run", "")))


def ci_passes(code: int, **env: str) -> bool:
    step = ci_step()
    case = next(line.strip() for line in step["run"].splitlines() if line.strip().startswith("case $code"))
    step_env = {k: str(v) for k, v in (step.get("env") or {}).items()}
    proc = subprocess.run(
        ["bash", "-c", f"code={int(code)}\n{case}"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **step_env, **env},
        capture_output=True, text=True, timeout=10,
    )
    return proc.returncode == 0


def job_outcomes(code: int) -> dict[str, bool]:
    """Whether the systemd unit and the CI job each pass when the guard exits ``code``."""
    return {"systemd": systemd_passes(code), "ci": ci_passes(code)}
