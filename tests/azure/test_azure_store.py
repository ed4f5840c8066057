"""The Blob artifact store against Azurite: staged blocks in parallel, digest in the same read, Content-MD5,
index tags, progress, a wrong digest refused with nothing committed, an unchanged digest never re-sent."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from conftest import BLOCK_MD5, TARGET
from deployer_azure.provider import AzureProvider
from deployer_azure.store import BlobArtifactStore

from deployer.errors import DigestMismatchError
from deployer.protocols import ProviderContext
from deployer.spec import Target

pytestmark = pytest.mark.timeout(60)


def make_store(tmp_path: Path, **options: Any) -> BlobArtifactStore:
    opts = {"container": "artifacts", "block_size_mb": 1, "upload_concurrency": 4, **options}
    provider = AzureProvider(
        ProviderContext(
            target=Target.model_validate(TARGET), options=AzureProvider.Options.model_validate(opts), home=tmp_path
        )
    )
    return provider.store()


@pytest.fixture
def blob_env(azurite: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    return azurite


def stored(conn: str, digest: str) -> Any:
    return BlobServiceClient.from_connection_string(conn).get_blob_client("artifacts", f"sha256/{digest}/model.tar.gz")


def artifact(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_put_stages_blocks_in_parallel_with_md5_tags_and_progress(blob_env: str, tmp_path: Path) -> None:
    BLOCK_MD5.clear()
    store = make_store(tmp_path)
    path, digest = artifact(tmp_path, 5 * 1024 * 1024 + 123)
    seen: list[tuple[int, int]] = []
    ref = store.put(path, digest, lambda done, total: seen.append((done, total)))

    assert ref.digest == digest and ref.size == path.stat().st_size
    assert ref.uri.endswith(f"/artifacts/sha256/{digest}/model.tar.gz")
    blob = stored(blob_env, digest)
    blocks, _ = blob.get_block_list("committed")
    assert len(blocks) == 6  # 1 MiB blocks
    props = blob.get_blob_properties()
    assert props.metadata == {"sha256": digest}
    assert BLOCK_MD5 == [True] * 6  # every block went with its Content-MD5
    assert blob.get_blob_tags() == {"deployer-managed": "true"}
    assert seen[-1] == (ref.size, ref.size) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert blob.download_blob().readall() == path.read_bytes()


def test_present_digest_moves_no_bytes(blob_env: str, tmp_path: Path) -> None:
    store = make_store(tmp_path)
    path, digest = artifact(tmp_path, 300_000)
    store.put(path, digest)
    before = store.calls
    ref = store.put(path, digest)
    assert store.calls - before == 1  # one Get Blob Properties
    assert store.find(digest) == ref


def test_wrong_digest_is_refused_and_nothing_is_committed(blob_env: str, tmp_path: Path) -> None:
    store = make_store(tmp_path)
    path, _ = artifact(tmp_path, 2 * 1024 * 1024)
    wrong = "0" * 64
    with pytest.raises(DigestMismatchError):
        store.put(path, wrong)
    assert store.find(wrong) is None
    blob = stored(blob_env, wrong)
    assert not blob.exists()


def test_get_verifies_the_digest_and_delete_is_idempotent(blob_env: str, tmp_path: Path) -> None:
    store = make_store(tmp_path)
    path, digest = artifact(tmp_path, 1_500_000)
    ref = store.put(path, digest)
    out = store.get(ref, tmp_path / "out" / "model.tar.gz")
    assert out.read_bytes() == path.read_bytes()

    blob = stored(blob_env, digest)
    blob.upload_blob(b"tampered", overwrite=True, metadata={"sha256": digest})
    with pytest.raises(DigestMismatchError):
        store.get(ref, tmp_path / "bad" / "model.tar.gz")
    assert not (tmp_path / "bad" / "model.tar.gz").exists()

    store.delete(digest)
    store.delete(digest)
    assert store.find(digest) is None


def test_block_ids_are_valid_base64_of_equal_length(blob_env: str, tmp_path: Path) -> None:
    # Put Block: "block IDs ... must be the same size for all blocks" (https://learn.microsoft.com/rest/api/storageservices/put-block)
    store = make_store(tmp_path)
    path, digest = artifact(tmp_path, 3 * 1024 * 1024)
    store.put(path, digest)
    blob = stored(blob_env, digest)
    blocks, _ = blob.get_block_list("committed")
    raw = [base64.b64decode(b.id) if not isinstance(b.id, bytes) else b.id for b in blocks]
    assert len({len(r) for r in raw}) == 1


def test_small_objects_are_content_addressed_too(blob_env: str, tmp_path: Path) -> None:
    store = make_store(tmp_path)
    data = os.urandom(2048)
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(DigestMismatchError):
        store.put_bytes(data, "1" * 64, "score.py")
    ref = store.put_bytes(data, digest, "score.py")
    assert ref.uri.endswith(f"/sha256/{digest}/score.py") and ref.size == len(data)
    before = store.calls
    assert store.put_bytes(data, digest, "score.py") == ref and store.calls - before == 1
