"""The README's two set-up commands, run as a user would from a fresh copy of the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [b.strip() for b in blocks]


def fresh_copy(dest: Path) -> Path:
    """The tracked files of the working tree: what a clone of the commit under test holds."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        src = ROOT / f.decode()
        if src.is_file():
            (dest / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f.decode())
    return dest


def test_readme_has_exactly_two_setup_commands() -> None:
    cmds = readme_commands()
    assert len(cmds) == 2, cmds
    assert "examples/quickstart.py" in cmds[0]
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = cmds[1].split("&&")[-1].strip()
    assert test_cmd in ci, f"CI must run the README's test command {test_cmd!r}"


@pytest.mark.timeout(600)
def test_quickstart_command_from_a_fresh_copy(tmp_path: Path) -> None:
    repo = fresh_copy(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT", "PYTEST"))}
    env["DEPLOYER_HOME"] = str(tmp_path / "home")
    log = tmp_path / "quickstart.log"
    try:
        with open(log, "wb") as out:
            proc = subprocess.run(["bash", "-c", readme_commands()[0]], cwd=repo, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=540)
        text = log.read_text()
        assert proc.returncode == 0, text[-3000:]
        url = re.search(r"endpoint:\s+(http://127\.0\.0\.1:\d+)", text)
        pred = re.search(r"prediction: \[(\d)\] \(release r0001\)", text)
        assert url and pred, text[-3000:]
    finally:
        subprocess.run([str(repo / ".venv" / "bin" / "deployer"), "destroy", "quickstart"], env=env,
                       capture_output=True, timeout=60)
