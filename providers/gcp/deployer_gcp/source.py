"""``gs://bucket/object`` model sources (``model.uri``), registered as the ``gs`` entry point of
``deployer.sources``.

The version tag is the object's generation (with its crc32c and size), read with one
``storage.objects.get`` of the metadata; a new upload to the same name always gets a new generation
(https://cloud.google.com/storage/docs/metadata#generation-number). The download reads exactly that
generation, so the bytes kept are the ones the tag names: when the object is replaced between the
two calls the read fails (404 for a superseded generation) and is reported as transient, never
cached under the old tag. Credentials are Application Default Credentials (``STORAGE_EMULATOR_HOST``
is honoured by the library); nothing is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from deployer.errors import NotFoundError, TransientError
from deployer.sources import ProgressFn, split_object
from deployer_gcp import _sdk
from deployer_gcp.errors import gcp_errors


def _split(uri: str) -> tuple[str, str]:
    return split_object(uri, "gs://BUCKET/path/to/model.joblib")


class _Counting:
    """A write-only file that reports the bytes written so far (the library has no progress hook)."""

    def __init__(self, f: IO[bytes], total: int, on_progress: ProgressFn | None) -> None:
        self._f, self._total, self._on_progress, self.done = f, total, on_progress, 0

    def write(self, data: bytes) -> int:
        n = self._f.write(data)
        self.done += len(data)
        if self._on_progress:
            self._on_progress(self.done, self._total or self.done)
        return n

    def flush(self) -> None:
        self._f.flush()

    def __getattr__(self, name: str) -> Any:  # tell/seek as the underlying file
        return getattr(self._f, name)


class GcsSource:
    """Reads models from Cloud Storage with Application Default Credentials."""

    def __init__(self) -> None:
        self._clients = _sdk.Clients(None, None)
        self._seen: dict[str, tuple[int, int]] = {}
        """uri -> (generation, size) read by :meth:`version`: what :meth:`download` reads."""

    def _blob(self, uri: str) -> Any:
        bucket, name = _split(uri)
        with gcp_errors("storage.objects.get"):
            blob = self._clients.storage().bucket(bucket).get_blob(name, retry=_sdk.storage_retry())
        if blob is None:
            raise NotFoundError(f"{uri} does not exist", hint="check model.uri (gsutil ls gs://BUCKET/PATH)")
        return blob

    def version(self, uri: str) -> str | None:
        blob = self._blob(uri)
        self._seen[uri] = (int(blob.generation), int(blob.size or 0))
        return f"{blob.generation}:{blob.crc32c or ''}:{blob.size or 0}"

    def download(self, uri: str, dest: Path, on_progress: ProgressFn | None = None) -> Path:
        bucket, name = _split(uri)
        if uri not in self._seen:
            self.version(uri)
        generation, size = self._seen[uri]
        blob = self._clients.storage().bucket(bucket).blob(name, generation=generation)
        target = dest / Path(name).name
        try:
            with open(target, "wb") as f, gcp_errors("storage.objects.get"):
                blob.download_to_file(_Counting(f, size, on_progress), retry=_sdk.storage_retry())
        except NotFoundError as e:
            raise TransientError(
                f"{uri} was replaced while it was read (generation {generation} is gone); deploy again"
            ) from e
        return target

    def download_prefix(self, uri: str, dest: Path) -> Path:
        """Copy every object below the ``gs://bucket/prefix`` directory into ``dest`` (Vertex AI's
        ``AIP_STORAGE_URI``, read by the serving runtime at start); return ``dest``."""
        bucket, _, prefix = uri[len("gs://") :].partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        with gcp_errors("storage.objects.list"):
            blobs = list(self._clients.storage().list_blobs(bucket, prefix=prefix, retry=_sdk.storage_retry()))
        for blob in blobs:
            rel = blob.name[len(prefix) :]
            if not rel or rel.endswith("/"):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with gcp_errors("storage.objects.get"):
                blob.download_to_filename(str(target), retry=_sdk.storage_retry())
        return dest
