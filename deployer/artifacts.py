"""Deterministic packaging of models into content-addressed artifacts.

The same model files always give the same bytes (sorted entries, zero mtimes, uid/gid 0, no
owner names, normalised modes, gzip header without a timestamp), so the sha256 of the tar.gz
names the model: re-deploying an unchanged model finds its digest in the store and moves nothing.
The digest is computed while the archive is written, never by a second read.

Every archive ends with a small manifest, ``deployer-manifest.json``: ``{"runtime": {"python": ...,
"scikit-learn": ..., "numpy": ...}}``, the versions (:func:`runtime_versions`) of the interpreter and
libraries that packaged (and, for a model object, pickled) the model. Providers read it to pick a
serving container that can load the model, or to refuse offline.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from deployer.digests import sha256_file as sha256_file  # re-exported: artifacts.sha256_file
from deployer.errors import SpecError

if TYPE_CHECKING:
    from deployer.spec import Serving

ARTIFACT_NAME = "model.tar.gz"
MANIFEST_NAME = "deployer-manifest.json"
CHUNK = 1 << 20
RUNTIME_LIBRARIES = ("scikit-learn", "numpy")


def runtime_versions() -> dict[str, str]:
    """``{"python": "3.11.7", "scikit-learn": "1.9.1", "numpy": "2.4.6"}`` for this interpreter.

    Libraries that are not installed are left out. These are the manifest's ``runtime`` fields.
    """
    out = {"python": platform.python_version()}
    for dist in RUNTIME_LIBRARIES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def read_manifest(archive: Path) -> dict[str, Any]:
    """The manifest of a packaged artifact (``{}`` for an archive made before manifests existed)."""
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.extractfile(MANIFEST_NAME)
        except KeyError:
            return {}
        return dict(json.loads(member.read())) if member is not None else {}


@dataclass(frozen=True)
class Packaged:
    """A packaged model on local disk, ready for ``ArtifactStore.put``.

    ``notes`` say what packaging decided on the user's behalf (e.g. why a compiled graph was refused).
    """

    path: Path
    digest: str
    size: int
    notes: tuple[str, ...] = ()


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``inner``."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        self.inner.write(data)
        return len(data)


def _entries(src: Path) -> list[tuple[Path, str]]:
    if src.is_file():
        return [(src, src.name)]
    out: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in {"__pycache__", ".git"})
        for f in sorted(files):
            if f.endswith(".pyc"):
                continue
            p = Path(root) / f
            out.append((p, p.relative_to(src).as_posix()))
    return sorted(out, key=lambda e: e[1])


def _tarinfo(name: str, size: int, executable: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if executable else 0o644
    return info


def package(
    src: Path, out_dir: Path | None = None, serving: Serving | None = None, flavor: str = "sklearn"
) -> Packaged:
    """Package a model file or directory into a deterministic ``model.tar.gz``; return its digest.

    A non-default ``serving`` adds its manifest (and, for ``compile: onnx``, the verified graph) to
    the archive, see :func:`deployer.serving.compile.serving_files`. Raises :class:`SpecError`
    (field ``model.path``) when ``src`` does not exist or is empty.
    """
    src = Path(src)
    if not src.exists():
        raise SpecError("model.path", f"{src} does not exist", fix="point model.path at the model file or directory")
    entries: list[tuple[Path | bytes, str]] = list(_entries(src))
    if not entries:
        raise SpecError("model.path", f"{src} is an empty directory", fix="put the model files in it")
    if any(name == MANIFEST_NAME for _, name in entries):
        raise SpecError("model.path", f"{src} holds a file named {MANIFEST_NAME}", fix="rename that file")
    notes: list[str] = []
    if serving is not None:
        from deployer.serving.compile import serving_files

        extra, notes = serving_files(src, serving, flavor)
        entries = sorted(
            [e for e in entries if e[1] not in extra] + [(b, n) for n, b in extra.items()], key=lambda e: e[1]
        )
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="deployer-pkg-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ARTIFACT_NAME
    with open(target, "wb") as raw:
        hasher = _HashingWriter(raw)
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=hasher, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for item, name in entries:
                if isinstance(item, bytes):
                    tar.addfile(_tarinfo(name, len(item), False), io.BytesIO(item))
                    continue
                st = item.stat()
                info = _tarinfo(name, st.st_size, bool(st.st_mode & 0o111))
                with open(item, "rb") as fh:
                    tar.addfile(info, fh)
            manifest = json.dumps({"runtime": runtime_versions()}, sort_keys=True).encode()
            tar.addfile(_tarinfo(MANIFEST_NAME, len(manifest), False), io.BytesIO(manifest))
    return Packaged(path=target, digest=hasher.sha.hexdigest(), size=hasher.size, notes=tuple(notes))


def package_object(obj: Any, out_dir: Path | None = None, serving: Serving | None = None) -> Packaged:
    """Serialise an in-memory model with joblib and package it (flavor ``sklearn``)."""
    import joblib  # a model object means the user has joblib's world loaded already

    with tempfile.TemporaryDirectory(prefix="deployer-obj-") as work:
        joblib.dump(obj, Path(work) / "model.joblib")
        return package(Path(work) / "model.joblib", out_dir, serving)


def unpack(archive: Path, dest: Path) -> Path:
    """Extract an artifact into ``dest`` (atomically: a temp dir renamed into place). Idempotent."""
    if dest.exists():
        return dest
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent if dest.parent.exists() else None))
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp, filter="data")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, dest)
    except OSError:
        if not dest.exists():
            raise
    return dest
