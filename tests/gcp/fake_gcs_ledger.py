"""A Cloud Storage JSON API fake for the ledger: object insert, get, delete and list, honouring generation
preconditions the way the service does.

gcp-storage-emulator ignores ``ifGenerationMatch`` (a second insert with ``ifGenerationMatch=0`` is
accepted: tests/gcp/test_ledger_objects.py shows it), so it cannot stand in for the ledger's conditional
writes. This fake serves the four methods google-cloud-storage sends for the ledger, on 127.0.0.1, with
``STORAGE_EMULATOR_HOST`` pointing at it:

* objects.insert, ``uploadType=multipart``: https://cloud.google.com/storage/docs/json_api/v1/objects/insert,
  https://cloud.google.com/storage/docs/uploading-objects#uploading-an-object (multipart/related: the
  object resource as JSON, then the media)
* objects.get, metadata or ``alt=media``: https://cloud.google.com/storage/docs/json_api/v1/objects/get
* objects.delete: https://cloud.google.com/storage/docs/json_api/v1/objects/delete
* objects.list: https://cloud.google.com/storage/docs/json_api/v1/objects/list

Each precondition is checked and applied under one lock, as the service applies a request atomically
(https://cloud.google.com/storage/docs/request-preconditions). A query parameter or metadata field the
reference does not list is answered 400 and kept in :attr:`FakeGcs.errors` (the tests assert it is empty),
so a misspelled parameter fails the test instead of being ignored.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import itertools
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google_crc32c

STANDARD = {"alt", "fields", "prettyPrint", "quotaUser", "userIp", "key", "userProject"}
"""Standard query parameters every JSON API method takes (https://cloud.google.com/storage/docs/json_api/v1/parameters)."""
PRECONDITIONS = {"ifGenerationMatch", "ifGenerationNotMatch", "ifMetagenerationMatch", "ifMetagenerationNotMatch"}
PARAMS = {
    "objects.insert": STANDARD | PRECONDITIONS
    | {"uploadType", "name", "contentEncoding", "kmsKeyName", "predefinedAcl", "projection"},
    "objects.get": STANDARD | PRECONDITIONS | {"generation", "projection", "softDeleted", "restoreToken"},
    "objects.delete": STANDARD | PRECONDITIONS | {"generation"},
    "objects.list": STANDARD
    | {
        "delimiter", "endOffset", "includeTrailingDelimiter", "includeFoldersAsPrefixes", "matchGlob",
        "maxResults", "pageToken", "prefix", "projection", "softDeleted", "startOffset", "versions",
    },
}
WRITABLE = {
    "name", "contentType", "contentEncoding", "contentDisposition", "contentLanguage", "cacheControl",
    "metadata", "crc32c", "md5Hash", "storageClass", "customTime", "kmsKeyName", "acl", "temporaryHold",
    "eventBasedHold", "retention", "contexts",
}
"""Object resource fields a client may set on insert (https://cloud.google.com/storage/docs/json_api/v1/objects#resource)."""
MAX_RESULTS = 1000
"""objects.list: maxResults above 1,000 is served as 1,000 (the reference's maxResults)."""


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def precondition_failed() -> ApiError:
    # https://cloud.google.com/storage/docs/json_api/v1/status-codes#412_Precondition_Failed
    return ApiError(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.")


@dataclass
class StoredObject:
    data: bytes
    generation: int
    content_type: str
    updated: str

    def resource(self, bucket: str, name: str) -> dict[str, Any]:
        return {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{self.generation}",
            "name": name,
            "bucket": bucket,
            "generation": str(self.generation),
            "metageneration": "1",
            "contentType": self.content_type,
            "size": str(len(self.data)),
            "md5Hash": base64.b64encode(hashlib.md5(self.data).digest()).decode(),
            "crc32c": crc32c(self.data),
            "etag": base64.b64encode(str(self.generation).encode()).decode(),
            "storageClass": "STANDARD",
            "timeCreated": self.updated,
            "updated": self.updated,
        }


def crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


@dataclass
class FakeGcs:
    """The objects of the buckets in :attr:`buckets`, and what was asked of them."""

    buckets: set[str]
    objects: dict[tuple[str, str], StoredObject] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _generations: Iterator[int] = field(default_factory=lambda: itertools.count(time.time_ns() // 1000))

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> tuple[
        int, dict[str, str], bytes
    ]:
        parts = [urllib.parse.unquote(p) for p in path.split("/")]
        if method == "POST" and path.startswith("/upload/storage/v1/b/") and len(parts) == 7 and parts[6] == "o":
            return self._call("objects.insert", query, lambda: self.insert(parts[5], query, headers, body))
        if path.startswith("/download/storage/v1/b/") and method == "GET" and len(parts) == 8 and parts[6] == "o":
            return self._call("objects.get", query, lambda: self.get(parts[5], parts[7], {**query, "alt": "media"}))
        if path.startswith("/storage/v1/b/") and len(parts) >= 6 and parts[5] == "o":
            if len(parts) == 6 and method == "GET":
                return self._call("objects.list", query, lambda: self.list(parts[4], query))
            if len(parts) == 7 and method == "GET":
                return self._call("objects.get", query, lambda: self.get(parts[4], parts[6], query))
            if len(parts) == 7 and method == "DELETE":
                return self._call("objects.delete", query, lambda: self.delete(parts[4], parts[6], query))
        raise ApiError(404, "notFound", f"the fake serves no {method} {path}")

    def _call(self, name: str, query: dict[str, str], run: Any) -> tuple[int, dict[str, str], bytes]:
        unknown = set(query) - PARAMS[name]
        if unknown:
            raise ApiError(400, "invalidParameter", f"{name} takes no parameter {sorted(unknown)}")
        self.calls[name] = self.calls.get(name, 0) + 1
        out: tuple[int, dict[str, str], bytes] = run()
        return out

    def _bucket(self, bucket: str) -> None:
        if bucket not in self.buckets:
            raise ApiError(404, "notFound", "The specified bucket does not exist.")

    @staticmethod
    def _match(query: dict[str, str], live: StoredObject | None) -> None:
        """ifGenerationMatch: 0 holds only when no live object exists; N only when the live one is generation N
        (https://cloud.google.com/storage/docs/request-preconditions#special-case). ifGenerationNotMatch: the
        opposite."""
        current = live.generation if live else 0
        if "ifGenerationMatch" in query and int(query["ifGenerationMatch"]) != current:
            raise precondition_failed()
        if "ifGenerationNotMatch" in query and int(query["ifGenerationNotMatch"]) == current:
            raise precondition_failed()
        if {"ifMetagenerationMatch", "ifMetagenerationNotMatch"} & set(query):
            raise ApiError(400, "invalid", "the fake does not model metageneration preconditions")

    def _live(self, bucket: str, name: str, query: dict[str, str]) -> StoredObject:
        """The live object, its preconditions checked (404 before 412, as objects.get / objects.delete answer)."""
        self._bucket(bucket)
        obj = self.objects.get((bucket, name))
        if obj is None:
            raise ApiError(404, "notFound", f"No such object: {bucket}/{name}")
        self._match(query, obj)
        return obj

    # -- methods ----------------------------------------------------------------------------
    def insert(self, bucket: str, query: dict[str, str], headers: Any, body: bytes) -> tuple[
        int, dict[str, str], bytes
    ]:
        self._bucket(bucket)
        if query.get("uploadType") != "multipart":
            raise ApiError(400, "invalid", f"the fake serves uploadType=multipart only, not {query.get('uploadType')}")
        meta, media, media_type = multipart(headers.get("Content-Type", ""), body)
        extra = set(meta) - WRITABLE
        if extra:
            raise ApiError(400, "invalid", f"the object resource has no writable fields {sorted(extra)}")
        name = meta.get("name") or query.get("name")
        if not name:
            raise ApiError(400, "required", "Required: the object's name")
        # the service checks the hashes the client sent against the bytes (objects.insert: crc32c, md5Hash)
        if "crc32c" in meta and meta["crc32c"] != crc32c(media):
            raise ApiError(400, "invalid", "Provided CRC32C does not match the object's data")
        if "md5Hash" in meta and meta["md5Hash"] != base64.b64encode(hashlib.md5(media).digest()).decode():
            raise ApiError(400, "invalid", "Provided MD5 hash does not match the object's data")
        with self._lock:
            self._match(query, self.objects.get((bucket, name)))
            obj = StoredObject(
                media,
                next(self._generations),
                meta.get("contentType") or media_type or "application/octet-stream",
                time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            )
            self.objects[(bucket, name)] = obj
        return as_json(200, obj.resource(bucket, name))

    def get(self, bucket: str, name: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            obj = self._live(bucket, name, query)
        if query.get("alt") != "media":
            return as_json(200, obj.resource(bucket, name))
        md5 = base64.b64encode(hashlib.md5(obj.data).digest()).decode()
        return 200, {
            "Content-Type": obj.content_type,
            "x-goog-generation": str(obj.generation),
            "x-goog-metageneration": "1",
            "x-goog-hash": f"crc32c={crc32c(obj.data)},md5={md5}",
            "x-goog-stored-content-length": str(len(obj.data)),
        }, obj.data

    def delete(self, bucket: str, name: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self._live(bucket, name, query)
            del self.objects[(bucket, name)]
        return 204, {}, b""

    def list(self, bucket: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self._bucket(bucket)
        if "delimiter" in query or "matchGlob" in query or query.get("versions") == "true":
            raise ApiError(400, "invalid", "the fake lists by prefix only")
        prefix = query.get("prefix", "")
        size = min(int(query.get("maxResults", MAX_RESULTS)), MAX_RESULTS)
        after = query.get("pageToken", "")
        with self._lock:
            names = sorted(n for b, n in self.objects if b == bucket and n.startswith(prefix) and n > after)
            page = [self.objects[(bucket, n)].resource(bucket, n) for n in names[:size]]
        out: dict[str, Any] = {"kind": "storage#objects", "items": page}
        if len(names) > size:
            out["nextPageToken"] = page[-1]["name"]
        return as_json(200, out)


def as_json(status: int, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(payload).encode()


def multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes, str]:
    """A multipart/related upload: the object resource (JSON) and the media, in that order."""
    if not content_type.startswith("multipart/related"):
        raise ApiError(400, "invalid", f"a multipart upload is multipart/related, not {content_type!r}")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts = list(message.iter_parts())  # type: ignore[attr-defined]
    if len(parts) != 2 or parts[0].get_content_type() != "application/json":
        raise ApiError(400, "invalid", "a multipart upload has two parts: the JSON resource, then the media")
    meta = json.loads(parts[0].get_payload(decode=True))
    media = parts[1].get_payload(decode=True) or b""
    return meta, media, parts[1].get_content_type()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGcs
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, headers, data = self.fake.handle(self.command, url.path, query, self.headers, body)
        except ApiError as e:
            if e.code == 400:
                self.fake.errors.append(f"{self.command} {url.path}?{url.query}: {e.message}")
            err = {"code": e.code, "message": e.message, "errors": [{"domain": "global", "reason": e.reason,
                                                                     "message": e.message}]}
            status, headers, data = as_json(e.code, {"error": err})
        except Exception as e:  # a request the fake cannot parse is a failed test, not a silent pass
            self.fake.errors.append(f"{self.command} {url.path}: {type(e).__name__}: {e}")
            status, headers, data = as_json(400, {"error": {"code": 400, "message": f"{type(e).__name__}: {e}"}})
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _serve


class FakeGcsServer:
    """:class:`FakeGcs` on 127.0.0.1 (a free port), in a daemon thread; a context manager."""

    def __init__(self, fake: FakeGcs) -> None:
        self.fake = fake
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"fake": fake}))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeGcsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
