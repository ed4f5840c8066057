"""S3ArtifactStore against moto: put / find / skip / digest mismatch / SSE / tags / bucket creation."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import boto3
import pytest
from deployer_aws.provider import AwsProvider

from deployer.errors import DigestMismatchError, StorageError

from .helpers import BUCKET, REGION, make_provider

pytestmark = pytest.mark.timeout(60)


def s3() -> Any:
    return boto3.client("s3", region_name=REGION)


def blob(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_put_then_find(provider: AwsProvider, tmp_path: Path) -> None:
    path, digest = blob(tmp_path, 10_000)
    store = provider.store()
    assert store.find(digest) is None
    seen: list[tuple[int, int]] = []
    ref = store.put(path, digest, on_progress=lambda d, t: seen.append((d, t)))
    assert ref.uri == f"s3://{BUCKET}/deployer/sha256/{digest}/model.tar.gz"
    assert ref.size == 10_000 and seen[-1] == (10_000, 10_000)
    assert store.find(digest) == ref
    head = s3().head_object(Bucket=BUCKET, Key=f"deployer/sha256/{digest}/model.tar.gz")
    assert head["Metadata"]["sha256"] == digest
    assert head["ServerSideEncryption"] == "AES256"
    tags = s3().get_object_tagging(Bucket=BUCKET, Key=f"deployer/sha256/{digest}/model.tar.gz")["TagSet"]
    assert {"Key": "deployer:managed", "Value": "true"} in tags
    out = store.get(ref, tmp_path / "back" / "model.tar.gz")
    assert out.read_bytes() == path.read_bytes()


def test_put_skips_when_present(provider: AwsProvider, tmp_path: Path) -> None:
    path, digest = blob(tmp_path, 1000)
    store = provider.store()
    store.put(path, digest)
    sent: list[str] = []
    store._s3.meta.events.register("before-call.s3.*", lambda model, **_: sent.append(model.name))
    store.put(path, digest)
    assert sent == ["HeadObject"]


def test_multipart_hashes_in_the_same_read(aws: None, tmp_path: Path) -> None:
    provider = make_provider(tmp_path, upload_chunk_mb=5, upload_concurrency=4)
    path, digest = blob(tmp_path, 12 * 1024 * 1024 + 7)
    sent: list[str] = []
    store = provider.store()
    store._s3.meta.events.register("before-call.s3.*", lambda model, **_: sent.append(model.name))
    ref = store.put(path, digest)
    assert sent.count("UploadPart") == 3 and "CompleteMultipartUpload" in sent
    assert store.find(digest) == ref


def test_digest_mismatch_deletes_the_object(provider: AwsProvider, tmp_path: Path) -> None:
    path, _ = blob(tmp_path, 5000)
    wrong = "0" * 64
    with pytest.raises(DigestMismatchError):
        provider.store().put(path, wrong)
    listed = s3().list_objects_v2(Bucket=BUCKET, Prefix="deployer/")
    assert listed.get("KeyCount", 0) == 0
    assert provider.store().find(wrong) is None


def test_object_with_other_digest_metadata_counts_as_absent(provider: AwsProvider, tmp_path: Path) -> None:
    digest = "a" * 64
    s3().put_object(Bucket=BUCKET, Key=f"deployer/sha256/{digest}/model.tar.gz", Body=b"x", Metadata={"sha256": "b"})
    assert provider.store().find(digest) is None


def test_sse_kms(aws: None, tmp_path: Path) -> None:
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["KeyId"]
    provider = make_provider(tmp_path, sse="aws:kms", kms_key_id=key)
    path, digest = blob(tmp_path, 2048)
    provider.store().put(path, digest)
    head = s3().head_object(Bucket=BUCKET, Key=f"deployer/sha256/{digest}/model.tar.gz")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith(key)


def test_create_bucket_blocks_public_access(aws: None, tmp_path: Path) -> None:
    provider = make_provider(tmp_path, bucket="fresh-bucket", create_bucket=True)
    path, digest = blob(tmp_path, 100)
    provider.store().put(path, digest)
    pab = s3().get_public_access_block(Bucket="fresh-bucket")["PublicAccessBlockConfiguration"]
    assert all(pab.values())
    enc = s3().get_bucket_encryption(Bucket="fresh-bucket")["ServerSideEncryptionConfiguration"]
    assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_missing_bucket_is_a_storage_error(aws: None, tmp_path: Path) -> None:
    provider = make_provider(tmp_path, bucket="no-such-bucket")
    path, digest = blob(tmp_path, 100)
    with pytest.raises(StorageError):
        provider.store().put(path, digest)


def test_delete_is_idempotent(provider: AwsProvider, tmp_path: Path) -> None:
    path, digest = blob(tmp_path, 100)
    provider.store().put(path, digest)
    provider.store().delete(digest)
    provider.store().delete(digest)
    assert provider.store().find(digest) is None


def test_failed_multipart_upload_is_aborted(aws: None, tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    from deployer.errors import AuthError

    provider = make_provider(tmp_path, upload_chunk_mb=5, upload_concurrency=2)
    path, digest = blob(tmp_path, 11 * 1024 * 1024)
    store = provider.store()
    sent: list[str] = []
    store._s3.meta.events.register("before-call.s3.*", lambda model, **_: sent.append(model.name))

    def deny(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "UploadPart")

    store._s3.meta.events.register("before-call.s3.UploadPart", deny)
    with pytest.raises(AuthError):
        store.put(path, digest)
    assert "AbortMultipartUpload" in sent
    assert store.find(digest) is None
