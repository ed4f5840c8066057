"""How one release is served: batching, limits, timeouts and a compiled graph, read from its artifact.

The spec's ``serving`` section (:class:`deployer.spec.Serving`) is written into the artifact manifest
(``deployer-manifest.json``, section ``serving``) when the artifact is identified, only when it differs
from the defaults, so a model with the default settings keeps its digest. A worker reads it when it loads the
release; an artifact without the file is served with the defaults. This module imports nothing
heavy: the worker reads it on its hot start path.

File format::

    {"batching": {"enabled": null, "max_batch": 64, "max_wait_ms": 2.0},
     "timeout_s": 30.0, "max_body_mb": 10.0,
     "compile": {"requested": "onnx", "file": "model.onnx", "reason": null,
                 "inputs": {"width": 20, "numeric": true, "allow_nan": false}}}

``compile.file`` is None when the conversion was refused; ``reason`` then says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

MANIFEST = "deployer-serving.json"
"""File name of the serving settings :func:`deployer.serving.compile.serving_files` produces; packing
folds them into the artifact manifest's ``serving`` section (older artifacts hold this file)."""
ARTIFACT_MANIFEST = "deployer-manifest.json"
"""The artifact manifest (:data:`deployer.artifacts.MANIFEST_NAME`; not imported: this module stays light)."""

RECYCLE_FACTOR = 2.0
"""A prediction still running after ``RECYCLE_FACTOR * timeout_s`` gets its worker recycled."""


@dataclass(frozen=True)
class Settings:
    """Serving settings of one release (the runtime form of ``spec.serving``).

    ``batching`` None means "the flavor decides": on for sklearn and onnx, off for python unless the
    model object has ``batchable = True``.
    """

    batching: bool | None = None
    max_batch: int = 64
    max_wait_ms: float = 2.0
    timeout_s: float = 30.0
    max_body_mb: float = 10.0
    compiled: str | None = None
    """File name of the compiled graph to serve instead of the pickled model (None: the model itself)."""
    inputs: dict[str, Any] = field(default_factory=dict)
    """Input contract recorded at compile time (width, numeric, allow_nan)."""
    compile_reason: str | None = None

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def recycle_after_s(self) -> float:
        return self.timeout_s * RECYCLE_FACTOR


DEFAULT = Settings()


def from_manifest(data: dict[str, Any]) -> Settings:
    """Settings from a decoded manifest; missing keys keep their defaults."""
    batching = data.get("batching") or {}
    compiled = data.get("compile") or {}
    return Settings(
        batching=batching.get("enabled"),
        max_batch=int(batching.get("max_batch", DEFAULT.max_batch)),
        max_wait_ms=float(batching.get("max_wait_ms", DEFAULT.max_wait_ms)),
        timeout_s=float(data.get("timeout_s", DEFAULT.timeout_s)),
        max_body_mb=float(data.get("max_body_mb", DEFAULT.max_body_mb)),
        compiled=compiled.get("file"),
        inputs=dict(compiled.get("inputs") or {}),
        compile_reason=compiled.get("reason"),
    )


def read_settings(path: Path | str) -> Settings:
    """The settings packaged with the artifact at ``path`` (a directory), or the defaults.

    Raises ``ValueError`` when the manifest exists but cannot be read (the release fails to load).
    """
    try:
        artifact = orjson.loads((Path(path) / ARTIFACT_MANIFEST).read_bytes())
    except (FileNotFoundError, OSError, orjson.JSONDecodeError):
        artifact = None
    if isinstance(artifact, dict):
        section = artifact.get("serving")
        return from_manifest(section) if isinstance(section, dict) else DEFAULT
    file = Path(path) / MANIFEST  # an artifact packed before the one manifest
    try:
        data = orjson.loads(file.read_bytes())
    except FileNotFoundError:
        return DEFAULT
    except (OSError, orjson.JSONDecodeError) as e:
        raise ValueError(f"{MANIFEST} in the artifact is unreadable: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{MANIFEST} in the artifact is not a JSON object")
    return from_manifest(data)
