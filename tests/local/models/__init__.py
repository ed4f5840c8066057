"""Python-flavor test models for the progressive-delivery tests (artifact directories, not a package API).

Each subdirectory is one artifact: ``model: {path: DIR, flavor: python, entrypoint: "<module>:Model"}``.

* ``healthy``: answers every request (``healthy_model:Model``).
* ``flaky``: raises on every fifth request a worker serves, i.e. 20% errors (``flaky_model:Model``).
* ``slow``: answers after ~300 ms (``slow_model:Model``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).parent
ENTRYPOINTS = {"healthy": "healthy_model:Model", "flaky": "flaky_model:Model", "slow": "slow_model:Model"}


def model_dir(kind: str, dest: Path, tag: str = "") -> Path:
    """Copy the ``kind`` artifact to ``dest`` (adding ``tag.txt`` so two copies get two digests)."""
    shutil.copytree(HERE / kind, dest, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "tag.txt").write_text(f"{kind} {tag}\n")
    return dest


def model_spec(kind: str, dest: Path, tag: str = "") -> dict[str, str]:
    """The spec's ``model`` section for a fresh copy of the ``kind`` artifact."""
    return {"path": str(model_dir(kind, dest, tag)), "flavor": "python", "entrypoint": ENTRYPOINTS[kind]}
