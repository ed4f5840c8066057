"""Artifacts named by their content: an unchanged model is not read, a changed byte is a new release,
packing happens in scratch space that never outlives it, and destroy leaves no store entry behind."""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import deployer
from deployer import artifacts
from deployer.digests import DigestCache
from deployer.errors import DeployerError, DigestMismatchError
from deployer.records import ArtifactRef
from deployer.scratch import scratch

pytestmark = pytest.mark.timeout(90)

ROWS = [[0.5, 0.1, -0.2], [-2.0, 0.0, 0.3]]


def _model(seed: int = 1) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 3))
    return LogisticRegression().fit(x, (x[:, 0] > 0.1 * seed).astype(int))


def _model_dir(root: Path, weights_mb: int = 0) -> Path:
    """A servable model directory: ``model.joblib`` and, when asked, ``weights_mb`` MiB of random weights."""
    root.mkdir(parents=True)
    joblib.dump(_model(), root / "model.joblib")
    if weights_mb:
        with open(root / "weights.bin", "wb") as fh:
            for _ in range(weights_mb):
                fh.write(os.urandom(1 << 20))
    return root


class _Opens:
    """Counts ``open`` calls (and the bytes read through them) on files below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve())
        self.opened: list[str] = []
        self._real = builtins.open
        self._lock = threading.Lock()

    def __call__(self, file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike) and os.path.realpath(file).startswith(self.root):
            with self._lock:
                self.opened.append(os.path.relpath(os.path.realpath(file), self.root))
        return self._real(file, *args, **kwargs)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.slow
def test_unchanged_redeploy_of_a_200mb_model_reads_no_model_bytes(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``open`` of a file below the model directory is counted: none on the redeploy."""
    src = _model_dir(tmp_path / "model", weights_mb=200)
    ep = deployer.deploy(src, name="big")
    try:
        assert ep.predict(ROWS) == _model().predict(np.array(ROWS)).tolist()
        counter = _Opens(src)
        with monkeypatch.context() as patched:
            patched.setattr(builtins, "open", counter)
            again = deployer.deploy(src, name="big")
        assert again.last is not None and again.last.outcome == "unchanged"
        assert counter.opened == [], f"an unchanged redeploy opened {counter.opened}"
    finally:
        ep.destroy()


def test_touch_rehashes_once_and_one_changed_byte_is_a_new_release(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _model_dir(tmp_path / "model", weights_mb=1)
    hashed: list[str] = []
    real = artifacts.DigestCache.sha256

    def counting(self: DigestCache, path: Path) -> str:
        before = self.reads
        out = real(self, path)
        if self.reads > before:
            hashed.append(Path(path).name)
        return out

    monkeypatch.setattr(artifacts.DigestCache, "sha256", counting)
    ep = deployer.deploy(src, name="touchy", strategy="all-at-once")
    try:
        assert sorted(hashed) == ["model.joblib", "weights.bin"]
        hashed.clear()
        st = (src / "weights.bin").stat()
        os.utime(src / "weights.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        touched = deployer.deploy(src, name="touchy")
        assert hashed == ["weights.bin"], "the touched file is read once more, the other not at all"
        assert touched.last is not None and touched.last.outcome == "unchanged"
        hashed.clear()
        assert deployer.deploy(src, name="touchy").last.outcome == "unchanged"  # type: ignore[union-attr]
        assert hashed == [], "and then it is known again"

        with open(src / "weights.bin", "r+b") as fh:
            fh.seek(12345)
            byte = fh.read(1)
            fh.seek(12345)
            fh.write(bytes([byte[0] ^ 1]))
        changed = deployer.deploy(src, name="touchy", strategy="all-at-once")
        assert changed.last is not None and changed.last.release == "r0002"
        assert [r.id for r in ep.history()] == ["r0001", "r0002"]
        assert ep.predict(ROWS) == _model().predict(np.array(ROWS)).tolist()
    finally:
        ep.destroy()


def test_destroy_leaves_no_store_or_cache_entry_no_ledger_row_names(home: Path, tmp_path: Path) -> None:
    src = _model_dir(tmp_path / "a")
    keeper = deployer.deploy(src, name="keeper")
    goner = deployer.deploy(src, name="goner")  # the same artifact as keeper's
    store = home / "local" / "artifacts" / "sha256"
    cache = home / "local" / "cache" / artifacts.identify(src).digest
    cache.mkdir(parents=True)  # an unpacked tree of an archive (the layout before stores held trees)
    try:
        assert [p.name for p in store.iterdir()] == [artifacts.identify(src).digest]
        goner.destroy()
        assert [p.name for p in store.iterdir()] == [artifacts.identify(src).digest], "keeper still names it"
        assert keeper.predict(ROWS) == _model().predict(np.array(ROWS)).tolist()
        keeper.destroy()
        assert list(store.iterdir()) == [] and not cache.exists(), "no ledger row names it any more"
        assert [p.name for p in (home / "local" / "artifacts").iterdir()] == ["sha256"], "no scratch left"
    finally:
        for name in ("keeper", "goner"):
            with contextlib.suppress(DeployerError):
                deployer.destroy(name)


# ---- identity ------------------------------------------------------------------------------------


def test_identity_is_the_content_not_the_metadata(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "digests.db")
    src = tmp_path / "m"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"alpha")
    (src / "sub" / "run.sh").write_bytes(b"#!/bin/sh\n")
    (src / "sub" / "run.sh").chmod(0o700)
    first = artifacts.identify(src, cache=cache)
    manifest = json.loads(first.manifest)
    assert [(f["path"], f["mode"], f["size"]) for f in manifest["files"]] == [
        ("a.bin", 0o644, 5),
        ("sub/run.sh", 0o755, 10),
    ]
    assert manifest["runtime"] == artifacts.runtime_versions()
    os.utime(src / "a.bin", (1, 1))
    (src / "sub" / "run.sh").chmod(0o750)  # the same normalised mode
    assert artifacts.identify(src, cache=cache).digest == first.digest
    copy = tmp_path / "elsewhere"
    first.stage(copy)
    (copy / artifacts.MANIFEST_NAME).unlink()
    assert artifacts.identify(copy, cache=cache).digest == first.digest, "paths outside the model do not count"
    (src / "a.bin").write_bytes(b"alphb")
    assert artifacts.identify(src, cache=cache).digest != first.digest


def test_the_manifest_records_onnxruntime_for_an_onnx_model(tmp_path: Path) -> None:
    src = tmp_path / "g"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"graph")
    runtime = json.loads(artifacts.identify(src, flavor="onnx").manifest)["runtime"]
    assert set(runtime) == {"python", "scikit-learn", "numpy", "onnxruntime"}
    assert "onnxruntime" not in json.loads(artifacts.identify(src).manifest)["runtime"]


def test_the_digest_cache_is_shared_by_processes(tmp_path: Path) -> None:
    """Four processes hashing the same files at once agree, and leave one row per file."""
    files = []
    for i in range(3):
        (tmp_path / f"f{i}").write_bytes(os.urandom(100_000))
        files.append(str(tmp_path / f"f{i}"))
    code = (
        "import sys; from pathlib import Path; from deployer.digests import DigestCache;"
        "c = DigestCache(Path(sys.argv[1])); print(','.join(c.sha256(Path(f)) for f in sys.argv[2:]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "d.db"), *files], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    outs = {p.communicate(timeout=60)[0] for p in procs}
    assert len(outs) == 1 and all(p.returncode == 0 for p in procs)
    cache = DigestCache(tmp_path / "d.db")
    assert ",".join(cache.sha256(Path(f)) for f in files).encode() + b"\n" in outs
    assert cache.reads == 0, "every digest came from the cache"
    cache.close()


# ---- packing and scratch ---------------------------------------------------------------------------


class _ArchiveStore:
    """An ``archive`` layout store that checks what ``upload`` hands it, as a cloud store does."""

    def __init__(self) -> None:
        self.seen: list[tuple[Path, str, str | None, list[str]]] = []

    def put(self, path: Path, digest: str, on_progress: Any = None, sha256: str | None = None) -> ArtifactRef:
        assert Path(path).parent.name.startswith("deployer-pack-")
        self.seen.append((Path(path), digest, sha256, [p.name for p in Path(tempfile.gettempdir()).iterdir()]))
        assert artifacts.sha256_file(path) == sha256
        return ArtifactRef(digest=digest, uri=f"memory://{digest}", size=Path(path).stat().st_size)


def _tmp_entries() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).iterdir()}


def test_upload_packs_in_scratch_and_leaves_nothing(tmp_path: Path) -> None:
    before = _tmp_entries()
    model = artifacts.identify(_model_dir(tmp_path / "m"))
    store = _ArchiveStore()
    ref = artifacts.upload(model, store)  # type: ignore[arg-type]
    assert ref.digest == model.digest and store.seen[0][2] is not None
    assert _tmp_entries() == before
    obj = artifacts.identify_object(_model())
    assert artifacts.upload(obj, store).digest == obj.digest  # type: ignore[arg-type]
    assert _tmp_entries() == before, "a model object is pickled in memory: no deployer-obj-* directory"


def test_a_file_changed_after_it_was_named_is_refused_when_packed(tmp_path: Path) -> None:
    src = _model_dir(tmp_path / "m")
    model = artifacts.identify(src, cache=DigestCache(tmp_path / "d.db"))
    joblib.dump(_model(5), src / "model.joblib")
    before = _tmp_entries()
    with pytest.raises(DigestMismatchError, match="changed while it was packed"):
        artifacts.upload(model, _ArchiveStore())  # type: ignore[arg-type]
    assert _tmp_entries() == before


def test_incompressible_weights_are_stored_not_deflated(tmp_path: Path) -> None:
    random = artifacts.identify(_model_dir(tmp_path / "r", weights_mb=1))
    assert artifacts.compress_level(random) == 0
    text = tmp_path / "t"
    text.mkdir()
    (text / "model.txt").write_bytes(b"0.125," * 100_000)
    assert artifacts.compress_level(artifacts.identify(text)) == 1
    with scratch("test") as work:
        packed = artifacts.archive(random, work)
        assert packed.size < random.size * 1.01 + 64 * 1024
        assert artifacts.read_manifest(packed.path) == json.loads(random.manifest)


@pytest.mark.parametrize("how", ["success", "failure", "interrupt"])
def test_scratch_is_removed_however_the_operation_ends(how: str) -> None:
    seen: list[Path] = []
    raised: type[BaseException] | None = {"success": None, "failure": RuntimeError, "interrupt": KeyboardInterrupt}[how]
    try:
        with scratch("op") as work:
            seen.append(work)
            (work / "sub").mkdir()
            (work / "sub" / "big").write_bytes(b"x" * 1000)
            assert work.parent == Path(tempfile.gettempdir()) and work.name.startswith("deployer-op-")
            if raised is not None:
                raise raised()
    except (RuntimeError, KeyboardInterrupt) as e:
        assert raised is not None and isinstance(e, raised)
    assert not seen[0].exists()
