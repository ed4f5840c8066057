"""The shared ledger's objects in S3: :class:`~deployer.protocols.LedgerObjects` at ``s3://BUCKET/PREFIX``.

Registered as the ``s3`` entry point of ``deployer.ledgers``. Every write is one conditional
``PutObject`` (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html):
``If-None-Match: *`` creates, ``If-Match: <ETag>`` replaces. S3 answers a lost precondition with
``412 PreconditionFailed``, or ``409 ConditionalRequestConflict`` when a concurrent write to the key was
in flight; both are the contract's ``None``. ``DeleteObject`` takes ``If-Match`` too
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html); as ``If-Match`` also
fails when nothing is there (RFC 7232), a refused delete is told from "already gone" by one read. The
version is the ETag. Everything else goes through :func:`deployer_aws.errors.translate`.

S3's ETag of a single-part object is the MD5 of its bytes, so writing the very same bytes twice would
yield the same version, and a key deleted and re-created with old bytes would revive an old version. The
contract wants a new version for every write, so each object starts with one line of its own,
``deployer-ledger-object <random hex>``, that :meth:`S3LedgerObjects.read` strips: the ETag is new on every
write and the caller's bytes come back exactly. An object without that line (written by hand) is read whole.

As with every retried request, a write whose response was lost and whose retry then finds its own object
reports the precondition lost; the caller re-reads.
"""

from __future__ import annotations

import os
import secrets
from typing import Any
from urllib.parse import urlsplit

from deployer.errors import NotFoundError, SpecError, StorageError
from deployer_aws import _sdk
from deployer_aws.errors import error_code, translate

LOST = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
"""A conditional write that lost: 412 (the ETag or absence did not hold) or 409 (a concurrent conditional
write to the same key); PutObject's IfMatch / IfNoneMatch in botocore's S3 service model."""
GONE = frozenset({"NoSuchKey", "404", "NotFound"})
MAX_KEYS = 1000
"""ListObjectsV2 returns at most 1,000 keys a page (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html)."""
DEFAULT_REGION = "us-east-1"


FRAME = b"deployer-ledger-object "
"""The first line of every object written here: this mark and 32 random hex digits, so its ETag is new."""


def frame(data: bytes) -> bytes:
    return FRAME + secrets.token_hex(16).encode() + b"\n" + data


def unframe(body: bytes) -> bytes:
    if body.startswith(FRAME):
        return body.split(b"\n", 1)[1] if b"\n" in body else b""
    return body


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes at either end)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise SpecError("state.uri", f"{uri!r} is not an S3 ledger location", fix="use s3://BUCKET/PREFIX")
    return parts.netloc, parts.path.strip("/")


class S3LedgerObjects:
    """Ledger objects under one S3 prefix. ``page_size`` caps keys per ListObjectsV2 page (tests use it
    to make few keys span pages). Construction makes no network call and imports no more than boto3."""

    def __init__(self, uri: str, *, page_size: int = MAX_KEYS) -> None:
        self.uri = uri
        self.bucket, self.prefix = split_uri(uri)
        self.page_size = page_size
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self._clients = _sdk.Clients(region or None)
        self._fallback = region is None

    @property
    def _s3(self) -> Any:
        if self._fallback:
            self._fallback = False
            try:
                self._clients.region  # noqa: B018 - the profile's region, if any
            except _sdk.NoRegionError:
                self._clients = _sdk.Clients(DEFAULT_REGION)  # S3 redirects to the bucket's region
        return self._clients.client("s3")

    def _key(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"ledger object keys are relative and not empty: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, operation: str) -> Exception:
        err = translate(exc, operation)
        if isinstance(err, NotFoundError) and error_code(exc) == "NoSuchBucket":
            return StorageError(
                f"the ledger bucket {self.bucket!r} does not exist",
                hint=f"create it (aws s3 mb s3://{self.bucket}) or fix the state URI {self.uri}",
            )
        return err

    def _put(self, key: str, data: bytes, condition: dict[str, str]) -> str | None:
        try:
            out = self._s3.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=frame(data),
                ContentType="application/octet-stream",
                **condition,
            )
        except _sdk.ClientError as exc:
            code = error_code(exc)
            if code in LOST or code in GONE:  # If-Match on a key that is gone: nothing to replace
                return None
            raise self._error(exc, "PutObject") from exc
        except _sdk.BotoCoreError as exc:
            raise translate(exc, "PutObject") from exc
        return str(out["ETag"])

    # -- LedgerObjects ------------------------------------------------------------------------
    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            out = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
            data = out["Body"].read()
        except _sdk.ClientError as exc:
            if error_code(exc) in GONE:
                return None
            raise self._error(exc, "GetObject") from exc
        except _sdk.BotoCoreError as exc:
            raise translate(exc, "GetObject") from exc
        return unframe(bytes(data)), str(out["ETag"])

    def create(self, key: str, data: bytes) -> str | None:
        return self._put(key, data, {"IfNoneMatch": "*"})

    def replace(self, key: str, data: bytes, version: str) -> str | None:
        return self._put(key, data, {"IfMatch": version})

    def delete(self, key: str, version: str | None = None) -> bool:
        condition = {"IfMatch": version} if version is not None else {}
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key), **condition)
        except _sdk.ClientError as exc:
            code = error_code(exc)
            if code in GONE:
                return True
            if code in LOST:  # RFC 7232 fails If-Match when nothing is there too: which is it?
                return self.read(key) is None
            raise self._error(exc, "DeleteObject") from exc
        except _sdk.BotoCoreError as exc:
            raise translate(exc, "DeleteObject") from exc
        return True

    def list(self, prefix: str) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base + prefix, PaginationConfig={"PageSize": self.page_size}
        )
        try:
            for page in pages:
                keys.extend(str(o["Key"])[len(base) :] for o in page.get("Contents", []))
        except _sdk.ClientError as exc:
            raise self._error(exc, "ListObjectsV2") from exc
        except _sdk.BotoCoreError as exc:
            raise translate(exc, "ListObjectsV2") from exc
        return sorted(keys)


__all__ = ["S3LedgerObjects", "split_uri"]
