"""GCS artifacts on gcp-storage-emulator: content-addressed, skipped when present, resumable, verified."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from deployer_gcp import _sdk
from deployer_gcp.options import GcpOptions
from deployer_gcp.store import GcsArtifactStore

from deployer.errors import DigestMismatchError

from .conftest import BUCKET, PROJECT, REGION, Emulator

pytestmark = pytest.mark.timeout(60)
MB = 1024 * 1024


@pytest.fixture
def store(storage_emulator: Emulator) -> GcsArtifactStore:
    return GcsArtifactStore(_sdk.Clients(PROJECT, REGION), GcpOptions(bucket=BUCKET, prefix="t", upload_chunk_mb=1))


def _file(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_put_is_content_addressed_and_skipped_when_present(
    store: GcsArtifactStore, storage_emulator: Emulator, tmp_path: Path
) -> None:
    path, digest = _file(tmp_path, 300_000)
    seen: list[tuple[int, int]] = []
    ref = store.put(path, digest, on_progress=lambda d, t: seen.append((d, t)))
    assert ref.uri == f"gs://{BUCKET}/t/sha256/{digest}/model.tar.gz" and ref.size == 300_000
    assert seen[-1] == (300_000, 300_000)
    storage_emulator.sent.clear()
    assert store.put(path, digest) == ref and store.find(digest) == ref
    assert storage_emulator.sent == []  # present: no upload request at all


def test_interrupted_upload_resumes_from_the_server_offset(
    store: GcsArtifactStore, storage_emulator: Emulator, tmp_path: Path
) -> None:
    path, digest = _file(tmp_path, 9 * MB + 1000)  # above 8 MiB the client uploads resumably, in chunks
    storage_emulator.sent.clear()
    storage_emulator.faults[:] = [503, 503]
    try:
        ref = store.put(path, digest)
        assert storage_emulator.faults == []  # both injected 503s were met and recovered from
    finally:
        storage_emulator.faults.clear()
    assert store.find(digest) == ref
    chunks = [(rng, n) for method, rng, n in storage_emulator.sent if method == "PUT" and n]
    # the failed chunk is sent again (and a status query asks where to resume); the first is never resent
    assert sum(1 for rng, _ in chunks if rng.startswith("bytes 0-")) == 1, chunks
    assert sum(n for _, n in chunks) <= path.stat().st_size + 2 * MB
    dest = store.get(ref, tmp_path / "back.tar.gz")
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest


def test_wrong_digest_is_refused_and_the_object_deleted(store: GcsArtifactStore, tmp_path: Path) -> None:
    path, _ = _file(tmp_path, 2 * MB + 7)
    wrong = "0" * 64
    with pytest.raises(DigestMismatchError, match="deleted"):
        store.put(path, wrong)
    assert store.find(wrong) is None
    assert store._head(store.key(wrong)) is None  # no partial object under the digest's name


def test_cmek_and_labels_reach_the_upload(storage_emulator: Emulator, tmp_path: Path) -> None:
    key = "projects/p/locations/us/keyRings/r/cryptoKeys/k"
    cmek = GcsArtifactStore(
        _sdk.Clients(PROJECT, REGION),
        GcpOptions(bucket=BUCKET, prefix="cmek", kms_key_name=key, labels={"team": "growth"}),
    )
    path, digest = _file(tmp_path, 1000)
    cmek.put(path, digest)
    blob = cmek._head(cmek.key(digest))
    assert blob is not None and blob.metadata == {"team": "growth", "sha256": digest}
    assert cmek._blob(cmek.key(digest)).kms_key_name == key


def test_delete_is_idempotent(store: GcsArtifactStore, tmp_path: Path) -> None:
    path, digest = _file(tmp_path, 1000)
    store.put(path, digest)
    store.delete(digest)
    store.delete(digest)
    assert store.find(digest) is None
