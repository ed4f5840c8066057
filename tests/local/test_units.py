"""Metrics buckets, the loader's flavors and the artifact store."""

from __future__ import annotations

import hashlib
import sys
import tarfile
import time
from pathlib import Path

import joblib
import pytest

from deployer.artifacts import MANIFEST_NAME, identify, unpack
from deployer.digests import DigestCache
from deployer.errors import CapabilityError, DigestMismatchError
from deployer.local.store import LocalArtifactStore
from deployer.serving.loader import ModelLoadError, load
from deployer.serving.metrics import MetricsRecorder, Series, aggregate, percentile, read_snapshots

from .conftest import train

pytestmark = pytest.mark.timeout(30)


def test_series_rolls_seconds_and_windows_select_them(tmp_path: Path) -> None:
    rec = MetricsRecorder(tmp_path / "w1.json")
    s = rec.get("r0001")
    t0 = int(time.time()) - 12
    for t in (t0 + 0.1, t0 + 0.5, t0 + 1.2):
        s.observe(t, 1.2, False)
    s.observe(t0 + 10, 40.0, True)
    rec.flush()
    snaps = read_snapshots(tmp_path)
    assert aggregate(snaps, None)["r0001"].requests == 4
    last5 = aggregate(snaps, 5, now=t0 + 10.5)["r0001"]
    assert (last5.requests, last5.errors) == (1, 1)
    assert last5.percentile(0.5) is not None and 30 <= last5.percentile(0.5) <= 50  # type: ignore[operator]
    both = aggregate(snaps + snaps, 20, now=t0 + 10.5)["r0001"]
    assert both.requests == 8, "two workers' files add up"


def test_old_seconds_expire_into_the_total() -> None:
    s = Series()
    s.observe(0.5, 1.0, False)
    s.observe(5000.0, 1.0, False)
    snap = s.snapshot(5000.0)
    assert list(snap["seconds"]) == ["5000"]  # type: ignore[call-overload]
    assert snap["total"][0] == 2  # type: ignore[index]


def test_percentile_interpolates_inside_bins() -> None:
    hist = [0] * 26
    hist[3] = 100  # all in (0.75, 1] ms
    p = percentile(hist, 0.5)
    assert p is not None and 0.75 <= p <= 1.0
    assert percentile([0] * 26, 0.99) is None


def test_load_sklearn_file_or_dir(tmp_path: Path) -> None:
    joblib.dump(train(0), tmp_path / "model.joblib")
    for where in (tmp_path, tmp_path / "model.joblib"):
        assert list(load(where, "sklearn").predict([[1, 0, 0, 0], [-1, 0, 0, 0]])) == [1, 0]


def test_load_sklearn_needs_one_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="exactly one"):
        load(tmp_path, "sklearn")
    (tmp_path / "model.joblib").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="cannot load model.joblib"):
        load(tmp_path, "sklearn")


def test_load_python_flavor_with_and_without_load(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    (a / "mymodel.py").write_text(
        "class M:\n"
        "    @classmethod\n"
        "    def load(cls, path):\n"
        "        o = cls(); o.scale = int((path / 'scale.txt').read_text()); return o\n"
        "    def predict(self, rows):\n"
        "        return [sum(r) * self.scale for r in rows]\n"
    )
    (a / "scale.txt").write_text("10")
    assert load(a, "python", "mymodel:M").predict([[1, 2]]) == [30]
    b = tmp_path / "b"
    b.mkdir()
    (b / "mymodel.py").write_text("class M:\n    def predict(self, rows):\n        return ['b' for _ in rows]\n")
    assert load(b, "python", "mymodel:M").predict([[1]]) == ["b"], "a same-named module from another release"
    (b / "bad.py").write_text("class N:\n    pass\n")
    with pytest.raises(ModelLoadError, match="no predict"):
        load(b, "python", "bad:N")
    with pytest.raises(ModelLoadError, match="cannot import"):
        load(b, "python", "missing:X")


def test_container_flavor_is_a_capability_error(tmp_path: Path) -> None:
    with pytest.raises(CapabilityError, match="container"):
        load(tmp_path, "container")


def test_onnx_needs_onnxruntime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without onnxruntime (simulated: a None entry in sys.modules makes its import fail) the error says
    what to install."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"needs onnxruntime .*pip install 'mldeployer\[onnx\]'"):
        load(tmp_path, "onnx")


def _archive(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.joblib").write_bytes(b"weights" * 1000)
    out = tmp_path / "model.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src / "model.joblib", arcname="model.joblib")
    return out, hashlib.sha256(out.read_bytes()).hexdigest()


def _tree(tmp_path: Path) -> tuple[Path, str]:
    """A model directory staged with its manifest, and its artifact digest."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "model.joblib").write_bytes(b"weights" * 1000)
    model = identify(src, cache=DigestCache(tmp_path / "digests.db"))
    return model.stage(tmp_path / "staged"), model.digest


def test_store_put_find_get_delete(tmp_path: Path) -> None:
    tree, digest = _tree(tmp_path)
    store = LocalArtifactStore(tmp_path / "store")
    assert store.find(digest) is None
    progress: list[tuple[int, int]] = []
    ref = store.put(tree, digest, on_progress=lambda d, t: progress.append((d, t)))
    assert Path(ref.uri) == (tmp_path / "store" / "sha256" / digest).resolve()
    assert (Path(ref.uri) / "model.joblib").read_bytes() == b"weights" * 1000
    assert not (Path(ref.uri) / "model.joblib").samefile(tree / "model.joblib"), "a copy, never a link"
    assert progress[-1] == (ref.size, ref.size) and store.find(digest) == ref
    assert store.put(tree, digest) == ref, "present: a no-op"
    got = store.get(ref, tmp_path / "out" / "x")
    assert (got / "model.joblib").read_bytes() == b"weights" * 1000 and (got / MANIFEST_NAME).exists()
    store.delete(digest)
    store.delete(digest)
    assert store.find(digest) is None
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["sha256"], "no scratch left in the store"


def test_store_rejects_a_digest_mismatch(tmp_path: Path) -> None:
    tree, digest = _tree(tmp_path)
    store = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(DigestMismatchError):
        store.put(tree, "0" * 64)
    (tree / "model.joblib").write_bytes(b"changed after it was named")
    with pytest.raises(DigestMismatchError, match="model.joblib"):
        store.put(tree, digest)
    assert store.find(digest) is None and store.find("0" * 64) is None
    assert not list((tmp_path / "store").rglob("model.joblib")), "no partial copy left"


def test_unpack_verifies_and_caches(tmp_path: Path) -> None:
    archive, digest = _archive(tmp_path)
    out = unpack(archive, tmp_path / "cache" / digest, digest)
    assert (out / "model.joblib").read_bytes() == b"weights" * 1000
    assert unpack(archive, tmp_path / "cache" / digest, digest) == out
    with pytest.raises(DigestMismatchError):
        unpack(archive, tmp_path / "cache" / ("1" * 64), "1" * 64)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [digest], "no partial tree left"
    assert not (tmp_path / "cache" / ("1" * 64)).exists()
