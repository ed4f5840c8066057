"""Suite-wide: the whole run gets a private ``TMPDIR`` and fails if anything is left in it.

Set when this file is imported (the first conftest pytest loads, before any test or fixture creates a
temporary file): ``TMPDIR`` and ``tempfile.tempdir`` point at a fresh directory, which subprocesses and
servers started by tests inherit. pytest's own ``tmp_path`` stays in the original temporary root
(``PYTEST_DEBUG_TEMPROOT``), so it does not count. ``DEPLOYER_HOME`` defaults to a private directory
too, so no test writes to the real deployer home. At the end of the session the private ``TMPDIR``
must be empty: anything left in it is listed and fails the run.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = tempfile.gettempdir()
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", _ROOT)
PRIVATE_TMP = Path(tempfile.mkdtemp(prefix="deployer-suite-tmp-", dir=_ROOT))
os.environ["TMPDIR"] = str(PRIVATE_TMP)
tempfile.tempdir = str(PRIVATE_TMP)
_HOME = None
if not os.environ.get("DEPLOYER_HOME"):
    _HOME = Path(tempfile.mkdtemp(prefix="deployer-suite-home-", dir=_ROOT))
    os.environ["DEPLOYER_HOME"] = str(_HOME)


NOT_OURS = {
    ".ses": "onnxruntime's telemetry session id, written by every process that creates an InferenceSession",
    "uv-*.lock": "uv's empty lock files (a test runs `uv` as a user would); uv keeps them in TMPDIR by design",
}
"""Files third-party tools keep in ``$TMPDIR`` for the life of the machine, not of an operation (name patterns)."""


def leftovers(root: Path) -> list[str]:
    """What is in ``root`` (but :data:`NOT_OURS`): its top-level entries with their total size."""
    out = []
    for entry in sorted(root.iterdir()):
        if entry.is_file() and any(fnmatch.fnmatch(entry.name, pattern) for pattern in NOT_OURS):
            continue
        files = [entry] if not entry.is_dir() else [f for f in entry.rglob("*") if f.is_file()]
        size = sum(f.stat().st_size for f in files if f.exists())
        peek = entry.read_bytes()[:80] if entry.is_file() and size <= 80 else b""
        out.append(f"{entry.name} ({size} bytes{': ' + repr(peek) if peek else ''})")
    return out


@pytest.fixture(scope="session", autouse=True)
def private_tmpdir() -> Iterator[Path]:
    """The suite's private ``TMPDIR``; its teardown fails the run when something was left behind."""
    yield PRIVATE_TMP
    left = leftovers(PRIVATE_TMP)
    shutil.rmtree(PRIVATE_TMP, ignore_errors=True)
    if _HOME is not None:
        shutil.rmtree(_HOME, ignore_errors=True)
    if left:
        raise AssertionError(f"the suite left {len(left)} entries in TMPDIR: {', '.join(left[:20])}")
