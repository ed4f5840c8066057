"""S3 artifact store: ``s3://BUCKET/PREFIX/sha256/DIGEST/model.tar.gz``.

``find`` is one HeadObject that also checks the ``sha256`` metadata; ``put`` skips a digest that is
already there, otherwise uploads multipart with parallel parts while hashing the bytes in the same
read, and deletes the object and raises :class:`DigestMismatchError` when they do not hash to the
digest. Differs from the protocol only in what it adds: SSE-S3 / SSE-KMS, object tags, optional
bucket creation with public access blocked.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from deployer.digests import HashingReader, sha256_file
from deployer.errors import DigestMismatchError, NotFoundError, StorageError
from deployer.protocols import ProgressFn
from deployer.records import ArtifactRef
from deployer_aws import _sdk
from deployer_aws.errors import aws_errors, error_code, translate
from deployer_aws.options import AwsOptions

FILENAME = "model.tar.gz"
DIGEST_META = "sha256"
BYTES_META = "content-sha256"
"""Metadata naming the sha256 of the object's bytes (the archive), which ``get`` verifies; ``sha256`` names
the artifact (its manifest's digest)."""


class S3ArtifactStore:
    """Content-addressed artifacts in one S3 bucket (see the module docstring)."""

    def __init__(self, clients: _sdk.Clients, options: AwsOptions, tags: dict[str, str] | None = None) -> None:
        if not options.bucket:
            raise StorageError("provider_options.bucket is not set", hint="name the S3 bucket for artifacts")
        self._clients = clients
        self.options = options
        self.bucket = options.bucket
        self.prefix = options.prefix.strip("/")
        self.tags = {**options.tags, **(tags or {})}
        self._bucket_checked = False

    # -- layout -------------------------------------------------------------------------------
    def key(self, digest: str, filename: str = FILENAME) -> str:
        parts = [p for p in (self.prefix, "sha256", digest, filename) if p]
        return "/".join(parts)

    def uri(self, digest: str, filename: str = FILENAME) -> str:
        return f"s3://{self.bucket}/{self.key(digest, filename)}"

    @property
    def _s3(self) -> Any:
        return self._clients.client("s3")

    # -- protocol -----------------------------------------------------------------------------
    def find(self, digest: str, filename: str = FILENAME) -> ArtifactRef | None:
        """One HeadObject. An object whose ``sha256`` metadata differs counts as absent."""
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self.key(digest, filename))
        except _sdk.ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return None  # real S3 answers a HEAD in a missing bucket with a bare 404 too
            raise self._storage_error(exc, "HeadObject") from exc
        except _sdk.BotoCoreError as exc:
            raise translate(exc, "HeadObject") from exc
        if head.get("Metadata", {}).get(DIGEST_META) != digest:
            return None
        return ArtifactRef(digest=digest, uri=self.uri(digest, filename), size=int(head["ContentLength"]))

    def put(
        self,
        path: Path,
        digest: str,
        on_progress: ProgressFn | None = None,
        sha256: str | None = None,
        filename: str = FILENAME,
    ) -> ArtifactRef:
        """Upload unless present; hash while uploading; delete and raise when the bytes are not ``sha256``
        (the archive's digest; ``digest`` when None)."""
        path = Path(path)
        self._ensure_bucket()
        found = self.find(digest, filename)
        if found is not None:
            size = found.size
            if on_progress:
                on_progress(size, size)
            return found
        size = path.stat().st_size
        key = self.key(digest, filename)
        done = [0]
        lock = threading.Lock()

        def _cb(n: int) -> None:
            with lock:
                done[0] += n
                now = done[0]
            if on_progress:
                on_progress(min(now, size), size)

        extra: dict[str, Any] = {
            "Metadata": {DIGEST_META: digest, **({BYTES_META: sha256} if sha256 and sha256 != digest else {})},
            "ContentType": "application/gzip",
            "ServerSideEncryption": self.options.sse,
        }
        if self.options.sse == "aws:kms" and self.options.kms_key_id:
            extra["SSEKMSKeyId"] = self.options.kms_key_id
        if self.tags:
            extra["Tagging"] = "&".join(
                f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(self.tags.items())
            )
        config = _sdk.transfer_config(self.options.upload_chunk_mb, self.options.upload_concurrency)
        with open(path, "rb") as f:
            reader = HashingReader(f, path)
            try:
                self._s3.upload_fileobj(reader, self.bucket, key, ExtraArgs=extra, Callback=_cb, Config=config)
            except _sdk.ClientError as exc:
                raise self._storage_error(exc, "PutObject") from exc
            except _sdk.BotoCoreError as exc:
                raise translate(exc, "PutObject") from exc
            actual = reader.hexdigest(size)
        if actual != (sha256 or digest):
            with aws_errors("DeleteObject"):
                self._s3.delete_object(Bucket=self.bucket, Key=key)
            raise DigestMismatchError(
                f"{path} hashes to {actual}, not {sha256 or digest}; the upload was deleted",
                hint="the file changed while uploading or the digest is wrong; package again",
            )
        return ArtifactRef(digest=digest, uri=self.uri(digest, filename), size=size)

    def get(self, ref: ArtifactRef, dest: Path) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        bucket, key = parse_s3_uri(ref.uri)
        config = _sdk.transfer_config(self.options.upload_chunk_mb, self.options.upload_concurrency)
        try:
            self._s3.download_file(bucket, key, str(dest), Config=config)
        except _sdk.ClientError as exc:
            raise self._storage_error(exc, "GetObject") from exc
        with aws_errors("HeadObject"):
            want = self._s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(BYTES_META, ref.digest)
        actual = sha256_file(dest)
        if actual != want:
            dest.unlink(missing_ok=True)
            raise DigestMismatchError(f"{ref.uri} hashes to {actual}, not {want}")
        return dest

    def delete(self, digest: str, filename: str = FILENAME) -> None:
        """Idempotent: S3 answers 204 for a missing key."""
        with aws_errors("DeleteObject"):
            self._s3.delete_object(Bucket=self.bucket, Key=self.key(digest, filename))

    # -- helpers ------------------------------------------------------------------------------
    def put_bytes(self, data: bytes, digest: str, filename: str) -> ArtifactRef:
        """Small content-addressed object (the sklearn inference bundle); skipped when present."""
        found = self.find(digest, filename)
        if found is not None:
            return found
        self._ensure_bucket()
        if hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatchError(f"bytes for {filename} do not hash to {digest}")
        extra: dict[str, Any] = {"ServerSideEncryption": self.options.sse}
        if self.options.sse == "aws:kms" and self.options.kms_key_id:
            extra["SSEKMSKeyId"] = self.options.kms_key_id
        with aws_errors("PutObject"):
            self._s3.put_object(
                Bucket=self.bucket,
                Key=self.key(digest, filename),
                Body=data,
                Metadata={DIGEST_META: digest},
                ContentType="application/gzip",
                **extra,
            )
        return ArtifactRef(digest=digest, uri=self.uri(digest, filename), size=len(data))

    def _ensure_bucket(self) -> None:
        """With ``create_bucket``: create the bucket once, block public access, default encryption."""
        if self._bucket_checked or not self.options.create_bucket:
            return
        s3 = self._s3
        try:
            s3.head_bucket(Bucket=self.bucket)
        except _sdk.ClientError as exc:
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise self._storage_error(exc, "HeadBucket") from exc
            with aws_errors("CreateBucket"):
                kwargs: dict[str, Any] = {"Bucket": self.bucket}
                region = self._clients.region
                if region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
                s3.create_bucket(**kwargs)
                s3.put_public_access_block(
                    Bucket=self.bucket,
                    PublicAccessBlockConfiguration={
                        "BlockPublicAcls": True,
                        "IgnorePublicAcls": True,
                        "BlockPublicPolicy": True,
                        "RestrictPublicBuckets": True,
                    },
                )
                rule: dict[str, Any] = {"SSEAlgorithm": self.options.sse}
                if self.options.kms_key_id:
                    rule["KMSMasterKeyID"] = self.options.kms_key_id
                s3.put_bucket_encryption(
                    Bucket=self.bucket,
                    ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
                )
        self._bucket_checked = True

    def _storage_error(self, exc: Exception, op: str) -> Exception:
        err = translate(exc, op)
        if isinstance(err, NotFoundError) and error_code(exc) == "NoSuchBucket":
            return StorageError(
                f"bucket {self.bucket!r} does not exist",
                hint="create it or set provider_options.create_bucket: true",
            )
        return err


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise StorageError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key
