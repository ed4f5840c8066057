"""A model's artifact: its identity from the content of its files, packed only when a store lacks it.

**Identity.** :func:`identify` lists the model's files (sorted relative paths, ``__pycache__`` /
``.git`` / ``*.pyc`` left out) with each file's sha256, size and normalised mode (``0o755`` when
executable, else ``0o644``), and writes them with the runtime versions into one canonical manifest,
``deployer-manifest.json``; the sha256 of the manifest's bytes is the **artifact digest**. Per-file
digests come from :class:`~deployer.digests.DigestCache` (keyed by path, size, mtime_ns and inode in
the deployer home), so an unchanged model is named without reading a byte of it, and a touched one
is read once more.

Manifest::

    {"format": 1,
     "files": [{"path": "model.joblib", "sha256": "...", "size": 1234, "mode": 420}, ...],
     "runtime": {"python": "3.11.7", "scikit-learn": "1.9.1", "numpy": "2.4.6"},
     "serving": {...}}          # only when spec.serving differs from the defaults

``runtime`` (:func:`runtime_versions`) records the interpreter and libraries that identified (and,
for a model object, pickled) the model, with ``onnxruntime`` for an ``onnx`` flavor; providers read it
to choose a serving container or to refuse offline. ``serving`` is what
:func:`deployer.serving.settings.read_settings` serves the release with.

**Packing** happens only in :func:`upload`, when the store does not have the digest, in the form
the store declares (``ArtifactStore.layout``): ``"tree"`` (the local store: the files themselves)
or ``"archive"`` (a deterministic ``model.tar.gz``: sorted entries, zero mtimes, no owners, gzip
header without a timestamp; level 1, or 0 when the largest file does not compress, so incompressible
weights never pay for deflate). Each file is hashed again in the same read that packs it and checked
against the manifest; the archive's own sha256 is computed as it is written, and the store checks
the uploaded bytes against it in the same read as the upload.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from deployer.digests import DigestCache, HashingReader
from deployer.digests import sha256_file as sha256_file  # re-exported: artifacts.sha256_file
from deployer.errors import DigestMismatchError, SpecError, StorageError

if TYPE_CHECKING:
    from deployer.protocols import ArtifactStore, ProgressFn
    from deployer.records import ArtifactRef
    from deployer.spec import Serving

ARTIFACT_NAME = "model.tar.gz"
MANIFEST_NAME = "deployer-manifest.json"
OBJECT_NAME = "model.joblib"
CHUNK = 1 << 20
RUNTIME_LIBRARIES = ("scikit-learn", "numpy")
FLAVOR_LIBRARIES = {"onnx": ("onnxruntime",)}
_SKIP_DIRS = {"__pycache__", ".git"}


def runtime_versions(flavor: str | None = None) -> dict[str, str]:
    """``{"python": "3.11.7", "scikit-learn": "1.9.1", "numpy": "2.4.6"}`` for this interpreter.

    ``flavor`` ``onnx`` adds ``onnxruntime``. Libraries that are not installed are left out. These are
    the manifest's ``runtime`` fields.
    """
    out = {"python": platform.python_version()}
    for dist in (*RUNTIME_LIBRARIES, *FLAVOR_LIBRARIES.get(flavor or "", ())):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


@dataclass(frozen=True)
class Entry:
    """One file of a model: from disk (``source``) or generated (``data``)."""

    name: str
    sha256: str
    size: int
    mode: int
    source: Path | None = None
    data: bytes | None = None

    def record(self) -> dict[str, Any]:
        return {"path": self.name, "sha256": self.sha256, "size": self.size, "mode": self.mode}


@dataclass(frozen=True)
class Model:
    """A model named by its content: the entries, the manifest bytes and their digest (see module doc)."""

    entries: tuple[Entry, ...]
    manifest: bytes
    digest: str
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries) + len(self.manifest)

    def stage(self, dest: Path, symlinks: bool = False) -> Path:
        """Lay the model out as a directory at ``dest``: hard links where possible, else copies; with
        ``symlinks``, symbolic links to the model's files (for a reader that copies them anyway)."""
        for entry in self.entries:
            target = dest / entry.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.data is not None:
                target.write_bytes(entry.data)
                continue
            assert entry.source is not None
            if symlinks:
                os.symlink(os.path.abspath(entry.source), target)
                continue
            try:
                os.link(entry.source, target)
            except OSError:
                shutil.copyfile(entry.source, target)
        (dest / MANIFEST_NAME).write_bytes(self.manifest)
        return dest


@dataclass(frozen=True)
class Packaged:
    """A packed archive on local disk: ``digest`` names the model, ``sha256`` the archive's bytes."""

    path: Path
    digest: str
    size: int
    notes: tuple[str, ...] = ()
    sha256: str = ""


def default_cache() -> DigestCache:
    """The per-file digest cache of the deployer home (``<home>/digests.db``)."""
    from deployer.paths import home

    return DigestCache(home() / "digests.db")


def _mode(st_mode: int) -> int:
    return 0o755 if st_mode & 0o111 else 0o644


def _walk(src: Path) -> list[tuple[Path, str]]:
    if src.is_file():
        return [(src, src.name)]
    out: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for f in sorted(files):
            if not f.endswith(".pyc"):
                p = Path(root) / f
                out.append((p, p.relative_to(src).as_posix()))
    return sorted(out, key=lambda e: e[1])


def _generated(name: str, data: bytes) -> Entry:
    return Entry(name, hashlib.sha256(data).hexdigest(), len(data), 0o644, data=data)


def _model(entries: list[Entry], flavor: str | None, serving: dict[str, Any] | None, notes: list[str]) -> Model:
    entries.sort(key=lambda e: e.name)
    body: dict[str, Any] = {
        "format": 1,
        "files": [e.record() for e in entries],
        "runtime": runtime_versions(flavor),
    }
    if serving is not None:
        body["serving"] = serving
    manifest = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return Model(tuple(entries), manifest, hashlib.sha256(manifest).hexdigest(), tuple(notes))


def _with_serving(
    entries: list[Entry], src: Path, serving: Serving | None, flavor: str
) -> tuple[list[Entry], dict[str, Any] | None, list[str]]:
    """Add what ``serving`` needs (a compiled graph) and return its manifest section."""
    if serving is None:
        return entries, None, []
    from deployer.serving.compile import serving_files
    from deployer.serving.settings import MANIFEST as SERVING_MANIFEST

    extra, notes = serving_files(src, serving, flavor)
    section = json.loads(extra.pop(SERVING_MANIFEST)) if SERVING_MANIFEST in extra else None
    kept = [e for e in entries if e.name not in extra]
    return kept + [_generated(n, b) for n, b in extra.items()], section, notes


def identify(
    src: Path, serving: Serving | None = None, flavor: str = "sklearn", cache: DigestCache | None = None
) -> Model:
    """Name the model file or directory ``src`` by its content; read only files the cache does not know.

    Raises :class:`SpecError` (field ``model.path``) when ``src`` does not exist, is empty or holds a
    file named like the manifest.
    """
    src = Path(src)
    if not src.exists():
        raise SpecError("model.path", f"{src} does not exist", fix="point model.path at the model file or directory")
    files = _walk(src)
    if not files:
        raise SpecError("model.path", f"{src} is an empty directory", fix="put the model files in it")
    if any(name == MANIFEST_NAME for _, name in files):
        raise SpecError("model.path", f"{src} holds a file named {MANIFEST_NAME}", fix="rename that file")
    digests = cache or default_cache()
    entries = []
    try:
        for path, name in files:
            st = path.stat()
            entries.append(Entry(name, digests.sha256(path), st.st_size, _mode(st.st_mode), source=path))
    finally:
        if cache is None:
            digests.close()
    entries, section, notes = _with_serving(entries, src, serving, flavor)
    return _model(entries, flavor, section, notes)


def identify_object(obj: Any, serving: Serving | None = None) -> Model:
    """Name an in-memory model by its joblib pickle (``model.joblib``, flavor ``sklearn``); no file is written."""
    import joblib  # a model object means the user has joblib's world loaded already

    buf = io.BytesIO()
    joblib.dump(obj, buf)
    entries = [_generated(OBJECT_NAME, buf.getvalue())]
    if serving is not None:
        from deployer.scratch import scratch

        with scratch("obj") as work:  # the ONNX compiler reads the model from a file
            (work / OBJECT_NAME).write_bytes(buf.getvalue())
            entries, section, notes = _with_serving(entries, work / OBJECT_NAME, serving, "sklearn")
            return _model(entries, "sklearn", section, notes)
    return _model(entries, "sklearn", None, [])


# ---- the manifest read back --------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a model directory or a packed archive (``{}`` when it has none)."""
    path = Path(path)
    try:
        if path.is_dir():
            return dict(json.loads((path / MANIFEST_NAME).read_bytes()))
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile(MANIFEST_NAME)
            return dict(json.loads(member.read())) if member is not None else {}
    except (FileNotFoundError, KeyError):
        return {}


# ---- packing -----------------------------------------------------------------------------------


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


def _tarinfo(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = mode
    return info


def compress_level(model: Model, sample: int = 256 * 1024) -> int:
    """gzip level for ``model``: 0 (stored) when a sample of its largest file does not shrink by 10%, else 1."""
    largest = max(model.entries, key=lambda e: e.size)
    if largest.data is not None:
        head = largest.data[:sample]
    else:
        assert largest.source is not None
        with open(largest.source, "rb") as fh:
            head = fh.read(sample)
    if not head:
        return 1
    return 0 if len(zlib.compress(head, 1)) > 0.9 * len(head) else 1


def archive(model: Model, out_dir: Path) -> Packaged:
    """Pack ``model`` into ``out_dir/model.tar.gz``; each file is checked against the manifest as it is read.

    Raises :class:`DigestMismatchError` when a file changed since :func:`identify`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ARTIFACT_NAME
    with open(target, "wb") as raw:
        hasher = _HashingWriter(raw)
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=hasher, mtime=0, compresslevel=compress_level(model)) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for entry in model.entries:
                info = _tarinfo(entry.name, entry.size, entry.mode)
                if entry.data is not None:
                    tar.addfile(info, io.BytesIO(entry.data))
                    continue
                assert entry.source is not None
                with open(entry.source, "rb") as fh:
                    reader = HashingReader(fh)
                    tar.addfile(info, reader)
                if reader.hexdigest(entry.size) != entry.sha256:
                    raise DigestMismatchError(
                        f"{entry.source} changed while it was packed", hint="deploy again once the model is written"
                    )
            tar.addfile(_tarinfo(MANIFEST_NAME, len(model.manifest), 0o644), io.BytesIO(model.manifest))
    return Packaged(target, model.digest, hasher.size, model.notes, sha256=hasher.sha.hexdigest())


def package(
    src: Path, out_dir: Path, serving: Serving | None = None, flavor: str = "sklearn"
) -> Packaged:
    """Identify ``src`` and pack it into ``out_dir/model.tar.gz`` (for callers that need the archive itself,
    e.g. an image build context). ``out_dir`` is the caller's (a :func:`deployer.scratch.scratch` dir)."""
    return archive(identify(src, serving, flavor), Path(out_dir))


def upload(model: Model, store: ArtifactStore, on_progress: ProgressFn | None = None) -> ArtifactRef:
    """Put ``model`` into ``store`` in the store's layout, packing it in scratch space removed afterwards."""
    from deployer.scratch import scratch

    layout = getattr(store, "layout", "archive")
    with scratch("pack") as work:
        if layout == "tree":
            return store.put(model.stage(work / "model", symlinks=True), model.digest, on_progress)
        packed = archive(model, work)
        return store.put(packed.path, model.digest, on_progress, sha256=packed.sha256)


def unpack(archive_path: Path, dest: Path, digest: str | None = None) -> Path:
    """Extract a packed archive into ``dest`` (atomically; idempotent). The one unpack helper.

    ``digest``, when given, is the sha256 of the archive's bytes, verified in the same read as the
    extraction; a mismatch removes the partial tree and raises :class:`DigestMismatchError`.
    Extraction uses tarfile's ``data`` filter (no absolute paths, no links out, no devices).
    """
    dest = Path(dest)
    if dest.is_dir():
        return dest
    from deployer.scratch import scratch

    dest.parent.mkdir(parents=True, exist_ok=True)
    with scratch("unpack", under=dest.parent) as work:
        tmp = work / "tree"
        try:
            with open(archive_path, "rb") as raw:
                reader = HashingReader(raw)
                with tarfile.open(fileobj=reader, mode="r|gz") as tar:  # type: ignore[call-overload]
                    tar.extractall(tmp, filter="data")
                reader.drain()
        except FileNotFoundError as e:
            raise StorageError(f"artifact {archive_path} does not exist") from e
        except (OSError, tarfile.TarError) as e:
            raise StorageError(f"cannot extract {archive_path}: {e}") from e
        if digest is not None and reader.hexdigest() != digest:
            raise DigestMismatchError(f"{archive_path} hashes to {reader.hexdigest()}, not {digest}")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    return dest

