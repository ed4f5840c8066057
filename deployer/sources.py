"""Models from where they live: ``model.uri`` resolved to a verified local copy, downloaded once.

Schemes and who reads them:

* ``https://`` / ``http://``: built in (httpx), streamed and hashed in the same read; the spec must give
  the expected ``model.digest`` (``sha256:<hex>``), and a mismatch is refused before anything is kept.
* ``s3://``, ``gs://``, ``az://`` (and ``https://<account>.blob.core.windows.net/...``): through the
  installed provider package's SDK, found like providers through the ``deployer.sources`` entry points
  (``s3 = "deployer_aws.source:S3Source"``). A missing package is a typed error with its install hint.
* MLflow ``models:/`` and ``runs:/`` URIs: through MLflow's own client when ``mlflow`` is installed
  (:mod:`deployer.mlflow_source`, the ``models`` / ``runs`` entry points of this package); without it
  they are refused offline with the install hint and the way around.

The cache lives below ``$DEPLOYER_HOME/sources``: ``sha256/<digest>/<name>`` holds each verified
download (content-addressed: a digest names exactly one content), and ``index.json`` maps a URI and the
source's version tag (ETag, generation, model version) to the digest it had. A re-deploy asks the
source for the version tag only (one metadata call; none at all for an https URI whose digest is
cached) and moves no bytes when it is unchanged. Downloads go to a scratch directory in the cache that
is removed on success, failure and interruption.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from deployer.digests import sha256_file
from deployer.errors import DigestMismatchError, SpecError, StorageError, TransientError
from deployer.scratch import scratch

GROUP = "deployer.sources"
CHUNK = 1 << 20
ProgressFn = Callable[[int, int], None]

HINTS = {
    "s3": "pip install mldeployer-aws",
    "gs": "pip install mldeployer-gcp",
    "az": "pip install mldeployer-azure",
    "models": "pip install 'mldeployer[mlflow]'",
    "runs": "pip install 'mldeployer[mlflow]'",
}


class Source(Protocol):
    """One kind of remote location. Constructed with no arguments; no network until called."""

    def version(self, uri: str) -> str | None:
        """A tag that changes whenever the content at ``uri`` does (ETag, generation, model version);
        one cheap metadata call. None when the source cannot tell (then every resolve downloads)."""
        ...

    def download(self, uri: str, dest: Path, on_progress: ProgressFn | None = None) -> Path:
        """Write the content at ``uri`` into the empty directory ``dest``; return the file or directory
        to serve (inside ``dest``). Raises NotFoundError, AuthError, TransientError, StorageError."""
        ...


@dataclass(frozen=True)
class Fetched:
    """A remote model resolved to local bytes."""

    path: Path
    digest: str
    downloaded: bool


def scheme_of(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme == "https" and parts.hostname and parts.hostname.endswith(".blob.core.windows.net"):
        return "az"
    return parts.scheme


MLFLOW_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<ref>[^/]+)|@(?P<alias>[^/]+))$")
MLFLOW_RUNS = re.compile(r"^runs:/(?P<run>[0-9a-zA-Z]+)(?P<path>/.*)?$")


def split_object(uri: str, example: str) -> tuple[str, str]:
    """``scheme://container/name`` -> (container, name); a URI naming no object is a SpecError
    whose fix shows ``example``."""
    parts = urlsplit(uri)
    name = parts.path.lstrip("/")
    if not parts.netloc or not name or name.endswith("/"):
        raise SpecError("model.uri", f"{uri} does not name an object", fix=f"use {example}")
    return parts.netloc, name


def check_uri(uri: str, digest: str | None) -> None:
    """Offline checks of ``model.uri`` / ``model.digest`` (called by spec validation)."""
    scheme = scheme_of(uri)
    if scheme in ("models", "runs"):
        from importlib.util import find_spec

        if find_spec("mlflow") is None:
            raise ValueError(
                f"MLflow {scheme}:/ URIs are read with mlflow, which is not installed: {HINTS[scheme]}; "
                f"or run `mlflow artifacts download -u {uri} -d DIR` and set model.path to DIR"
            )
        if not (MLFLOW_MODELS.match(uri) or MLFLOW_RUNS.match(uri)):
            raise ValueError(
                f"{uri!r} is not an MLflow model URI; use models:/NAME/VERSION, models:/NAME@ALIAS, "
                "models:/NAME/latest or runs:/RUN_ID/PATH"
            )
        return
    if scheme in ("http", "https"):
        if digest is None:
            raise ValueError(
                "an http(s) model.uri needs model.digest, the sha256 of the file (sha256sum FILE), "
                "so what is served is what you meant"
            )
        return
    if scheme not in HINTS and scheme not in _entry_points():
        known = ", ".join(sorted({"https", *HINTS, *_entry_points()}))
        raise ValueError(f"unsupported model.uri scheme {scheme!r}; use one of: {known}")


@cache
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def source_for(scheme: str) -> Source:
    target = _entry_points().get(scheme)
    if target is None:
        raise SpecError("model.uri", f"no installed package reads {scheme}:// URIs", fix=HINTS.get(scheme))
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise SpecError("model.uri", f"reading {scheme}:// URIs failed to import: {e}", fix=HINTS.get(scheme)) from e
    source: Source = cls()
    return source


class Cache:
    """The content-addressed cache of downloaded models below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find(self, digest: str) -> Path | None:
        """The cached download with ``digest``: its one entry (a file or a directory), or None."""
        d = self.root / "sha256" / digest
        entries = sorted(d.iterdir()) if d.is_dir() else []
        return entries[0] if len(entries) == 1 else (d if entries else None)

    def known(self, uri: str, version: str | None) -> str | None:
        if version is None:
            return None
        entry = self._index().get(uri)
        return entry["digest"] if entry and entry.get("version") == version else None

    def remember(self, uri: str, version: str | None, digest: str) -> None:
        index = self._index()
        index[uri] = {"version": version, "digest": digest}
        tmp = self.root / f".index-{os.getpid()}.json"
        tmp.write_text(json.dumps(index, sort_keys=True, indent=1))
        os.replace(tmp, self.root / "index.json")

    def keep(self, content: Path, served: Path, digest: str) -> Path:
        """Move the verified download directory ``content`` to ``sha256/<digest>/`` (one rename);
        return where ``served`` (a path inside ``content``) now is."""
        final = self.root / "sha256" / digest
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(content, final)
        except OSError:
            if not final.exists():
                raise
        return final / served.relative_to(content)

    def _index(self) -> dict[str, dict[str, str | None]]:
        try:
            data = json.loads((self.root / "index.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def fetch(uri: str, digest: str | None, home: Path, on_progress: ProgressFn | None = None) -> Fetched:
    """Resolve ``uri`` to a verified local copy (see the module docstring). ``digest`` is
    ``model.digest`` without its ``sha256:`` prefix, or None."""
    cache_ = Cache(home / "sources")
    if digest is not None and (hit := cache_.find(digest)) is not None:
        return _described(hit, digest, downloaded=False)
    scheme = scheme_of(uri)
    source: Source = HttpSource() if scheme in ("http", "https") else source_for(scheme)
    version = source.version(uri)
    known = cache_.known(uri, version)
    if known is not None and (hit := cache_.find(known)) is not None:
        if digest is not None and known != digest:
            raise DigestMismatchError(
                f"{uri} holds sha256:{known}, not the expected sha256:{digest}",
                hint="update model.digest or check the source",
            )
        return _described(hit, known, downloaded=False)
    cache_.root.mkdir(parents=True, exist_ok=True)
    with scratch("download", under=cache_.root) as work:
        content = work / "content"
        content.mkdir()
        path = source.download(uri, content, on_progress)
        got = tree_digest(path)
        if digest is not None and got != digest:
            raise DigestMismatchError(
                f"{uri} downloaded as sha256:{got}, not the expected sha256:{digest}; nothing was kept",
                hint="update model.digest or check the source",
            )
        kept = cache_.keep(content, path, got)
        cache_.remember(uri, version, got)
        return _described(kept, got, downloaded=True)


def tree_digest(path: Path) -> str:
    """sha256 of a file, or of a directory's sorted (relative name, file sha256) list."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def _described(path: Path, digest: str, *, downloaded: bool) -> Fetched:
    return Fetched(path, digest, downloaded)


class HttpSource:
    """``http(s)://`` downloads, streamed with httpx and hashed in the same read."""

    def version(self, uri: str) -> str | None:
        return None  # the expected digest is the version: the cache is consulted by digest first

    def download(self, uri: str, dest: Path, on_progress: ProgressFn | None = None) -> Path:
        import httpx

        name = Path(urlsplit(uri).path).name or "model"
        target = dest / name
        try:
            with httpx.stream("GET", uri, follow_redirects=True, timeout=60.0) as resp:
                if resp.status_code == 404:
                    from deployer.errors import NotFoundError

                    raise NotFoundError(f"{uri} answered 404", hint="check model.uri")
                if resp.status_code >= 500 or resp.status_code == 429:
                    raise TransientError(f"{uri} answered {resp.status_code}")
                if resp.status_code >= 400:
                    raise StorageError(f"{uri} answered {resp.status_code}", hint="check model.uri and its access")
                total = int(resp.headers.get("content-length") or 0)
                done = 0
                with open(target, "wb") as out:
                    for chunk in resp.iter_bytes(CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        if on_progress:
                            on_progress(done, total or done)
        except httpx.TransportError as e:
            raise TransientError(f"downloading {uri} failed: {type(e).__name__}: {e}") from e
        return target
