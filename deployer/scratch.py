"""Scratch space: one directory per operation, removed when the operation ends, however it ends.

Everything an operation writes on the side (a packed archive, a staged model tree, a download in
progress) lives below the directory :func:`scratch` yields: ``$TMPDIR/deployer-<op>-<random>``. It is
removed on success, on an exception and on KeyboardInterrupt, so nothing outlives its operation.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch(op: str, under: Path | None = None) -> Iterator[Path]:
    """A fresh directory for the operation ``op`` (``pack``, ``serve``, ``stage``...), removed on exit.

    ``under`` puts it below another directory (e.g. a store's root, so a rename into place stays on
    one filesystem) instead of ``$TMPDIR``.
    """
    if under is not None:
        Path(under).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"deployer-{op}-", dir=under))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
