"""GCS artifact store: ``gs://BUCKET/PREFIX/sha256/DIGEST/model.tar.gz``.

``find`` is one object GET that also checks the ``sha256`` metadata (the artifact digest). ``put``
skips a digest that is already there, otherwise makes a resumable upload in chunks while hashing the
bytes in the same read (:class:`deployer.digests.HashingReader`): a chunk that fails (a 5xx, a dropped
connection) is retried from the offset the server reports, not from the start, and bytes sent twice
are hashed once. When the bytes do not hash to the digest the
object is deleted and :class:`DigestMismatchError` raised. CMEK (``kms_key_name``) and the spec's
labels (as object metadata) by option.

Vertex AI's prebuilt containers read a model *directory* holding ``model.joblib`` / ``model.pkl``,
not a tarball, so :meth:`GcsArtifactStore.model_dir` stages the unpacked model once per digest at
``.../sha256/DIGEST/model/`` (content-addressed like the tarball, so it is never staged twice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployer.artifacts import unpack
from deployer.digests import HashingReader, sha256_file
from deployer.errors import DigestMismatchError, NotFoundError, StorageError
from deployer.protocols import ProgressFn
from deployer.records import ArtifactRef
from deployer.scratch import scratch
from deployer_gcp import _sdk
from deployer_gcp.errors import gcp_errors
from deployer_gcp.options import GcpOptions

FILENAME = "model.tar.gz"
DIGEST_META = "sha256"
BYTES_META = "content-sha256"
"""Metadata naming the sha256 of the object's bytes (the archive), which ``get`` verifies; ``sha256`` names
the artifact (its manifest's digest)."""
MODEL_FILES = ("*.joblib", "*.pkl")
CHUNK_QUANTUM = 256 * 1024
"""Resumable upload chunks are multiples of 256 KiB (https://cloud.google.com/storage/docs/performing-resumable-uploads)."""


class GcsArtifactStore:
    """Content-addressed artifacts in one GCS bucket (see the module docstring)."""

    def __init__(self, clients: _sdk.Clients, options: GcpOptions, labels: dict[str, str] | None = None) -> None:
        if not options.bucket:
            raise StorageError("provider_options.bucket is not set", hint="name the GCS bucket for artifacts")
        self._clients = clients
        self.options = options
        self.bucket_name = options.bucket
        self.prefix = options.prefix.strip("/")
        self.labels = {**options.labels, **(labels or {})}

    # -- layout -------------------------------------------------------------------------------
    def key(self, digest: str, filename: str = FILENAME) -> str:
        return "/".join(p for p in (self.prefix, "sha256", digest, filename) if p)

    def uri(self, digest: str, filename: str = FILENAME) -> str:
        return f"gs://{self.bucket_name}/{self.key(digest, filename)}"

    def _blob(self, key: str) -> Any:
        bucket = self._clients.storage().bucket(self.bucket_name)
        return bucket.blob(key, chunk_size=self.options.upload_chunk_mb * 1024 * 1024,
                           kms_key_name=self.options.kms_key_name)

    def _head(self, key: str) -> Any:
        """The object's metadata (one GET), or None."""
        try:
            with gcp_errors("storage.objects.get"):
                return self._clients.storage().bucket(self.bucket_name).get_blob(key, retry=_sdk.storage_retry())
        except NotFoundError:
            return None

    # -- protocol -----------------------------------------------------------------------------
    def find(self, digest: str, filename: str = FILENAME) -> ArtifactRef | None:
        """One object GET. An object whose ``sha256`` metadata differs counts as absent."""
        blob = self._head(self.key(digest, filename))
        if blob is None or (blob.metadata or {}).get(DIGEST_META) != digest:
            return None
        return ArtifactRef(digest=digest, uri=self.uri(digest, filename), size=int(blob.size or 0))

    def put(
        self, path: Path, digest: str, on_progress: ProgressFn | None = None, sha256: str | None = None
    ) -> ArtifactRef:
        """Upload unless present; hash while uploading; delete and raise when the bytes are not ``sha256``
        (the archive's digest; ``digest`` when None)."""
        path = Path(path)
        found = self.find(digest)
        if found is not None:
            if on_progress:
                on_progress(found.size, found.size)
            return found
        size = path.stat().st_size
        blob = self._blob(self.key(digest))
        blob.metadata = {**self.labels, DIGEST_META: digest, **_bytes_meta(digest, sha256)}
        report = (lambda end: on_progress(min(end, size), size)) if on_progress else None
        with open(path, "rb") as f:
            stream = HashingReader(f, path, report)
            with gcp_errors("storage.objects.insert"):
                blob.upload_from_file(stream, size=size, content_type="application/gzip", retry=_sdk.storage_retry())
            actual = stream.hexdigest(size)
        if actual != (sha256 or digest):
            self._delete_key(self.key(digest))
            raise DigestMismatchError(
                f"{path} hashes to {actual}, not {sha256 or digest}; the uploaded object was deleted",
                hint="the file changed while uploading or the digest is wrong; package again",
            )
        return ArtifactRef(digest=digest, uri=self.uri(digest), size=size)

    def get(self, ref: ArtifactRef, dest: Path) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        bucket, key = parse_gs_uri(ref.uri)
        blob = self._clients.storage().bucket(bucket).blob(key)
        try:
            with gcp_errors("storage.objects.get"):
                blob.download_to_filename(str(dest), retry=_sdk.storage_retry())
        except NotFoundError as exc:
            dest.unlink(missing_ok=True)
            raise StorageError(f"{ref.uri} is not in the bucket", hint="deploy the model again") from exc
        head = self._clients.storage().bucket(bucket).get_blob(key, retry=_sdk.storage_retry())
        want = ((head.metadata if head is not None else None) or {}).get(BYTES_META, ref.digest)
        actual = sha256_file(dest)
        if actual != want:
            dest.unlink(missing_ok=True)
            raise DigestMismatchError(f"{ref.uri} hashes to {actual}, not {want}")
        return dest

    def delete(self, digest: str) -> None:
        """Idempotent: the tarball and the staged model directory, when present."""
        self._delete_key(self.key(digest))
        bucket = self._clients.storage().bucket(self.bucket_name)
        with gcp_errors("storage.objects.list"):
            staged = list(bucket.list_blobs(prefix=self.key(digest, "model/"), retry=_sdk.storage_retry()))
        for blob in staged:
            self._delete_key(blob.name)

    # -- Vertex model directory ---------------------------------------------------------------
    def model_dir(self, ref: ArtifactRef) -> str:
        """``gs://.../sha256/DIGEST/model/`` holding the artifact's one model file as ``model.<ext>``.

        Staged once: a present ``model.joblib`` / ``model.pkl`` carrying the digest is reused.
        """
        for ext in ("joblib", "pkl"):
            if self.find(ref.digest, f"model/model.{ext}") is not None:
                return self.uri(ref.digest, "model/")
        with scratch("vertex-model") as work:
            archive = self.get(ref, work / FILENAME)
            root = unpack(archive, work / "x")
            files = sorted(p for pat in MODEL_FILES for p in Path(root).rglob(pat))
            if len(files) != 1:
                raise StorageError(
                    f"the artifact holds {len(files)} .joblib/.pkl files; Vertex's prebuilt container loads one",
                    hint="package exactly one model file, or set provider_options.image",
                )
            name = f"model/model{files[0].suffix}"
            blob = self._blob(self.key(ref.digest, name))
            blob.metadata = {**self.labels, DIGEST_META: ref.digest}
            with gcp_errors("storage.objects.insert"):
                blob.upload_from_filename(str(files[0]), retry=_sdk.storage_retry())
        return self.uri(ref.digest, "model/")

    def _delete_key(self, key: str) -> None:
        try:
            with gcp_errors("storage.objects.delete"):
                self._clients.storage().bucket(self.bucket_name).blob(key).delete(retry=_sdk.storage_retry())
        except NotFoundError:
            return


def parse_gs_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://"):
        raise StorageError(f"not a gs:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _bytes_meta(digest: str, sha256: str | None) -> dict[str, str]:
    """``{BYTES_META: sha256}`` when the archive's digest differs from the artifact's (else nothing)."""
    return {BYTES_META: sha256} if sha256 and sha256 != digest else {}
