"""S3LedgerObjects against moto over HTTP on 127.0.0.1: conditional create / replace / delete, paging,
8 processes racing, the URI and the errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from deployer_aws.ledger import S3LedgerObjects

from deployer.errors import SpecError, StorageError
from deployer.testing import ledger_objects

from .helpers import REGION

pytestmark = pytest.mark.timeout(60)

LEDGER_BUCKET = "deployer-ledger"


@pytest.fixture(scope="module")
def atomic_conditional_writes() -> Iterator[None]:
    """moto checks If-None-Match / If-Match and then writes, in two steps a concurrent request can come
    between; S3 decides and writes atomically ("if multiple conditional writes occur for the same object
    name, the first write operation to finish succeeds":
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html). The fake must refuse
    what S3 refuses, so its conditional handlers run one at a time."""
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    originals = {name: getattr(S3Response, name) for name in ("put_object", "delete_object")}

    def serialised(orig: Any) -> Any:
        def handler(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return orig(self, *args, **kwargs)

        return handler

    for name, orig in originals.items():
        setattr(S3Response, name, serialised(orig))
    yield
    for name, orig in originals.items():
        setattr(S3Response, name, orig)


@pytest.fixture
def s3_uri(moto_server: str, monkeypatch: pytest.MonkeyPatch, atomic_conditional_writes: None) -> str:
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    boto3.client("s3", region_name=REGION, endpoint_url=moto_server).create_bucket(Bucket=LEDGER_BUCKET)
    return f"s3://{LEDGER_BUCKET}/teams/ml/ledger"


@pytest.fixture
def store(s3_uri: str) -> S3LedgerObjects:
    return S3LedgerObjects(s3_uri)


class TestS3LedgerObjects(ledger_objects.LedgerObjectsChecks):
    """create twice, replace and delete with stale versions (deployer.testing.ledger_objects)."""


def test_every_write_is_one_conditional_put(store: S3LedgerObjects, moto_server: str) -> None:
    sent: list[tuple[str, str | None, str | None]] = []

    def record(params: Any, model: Any, **_: Any) -> None:
        headers = params.get("headers", {})
        sent.append((model.name, headers.get("If-None-Match"), headers.get("If-Match")))

    store._s3.meta.events.register("before-call.s3.*", record)
    v1 = store.create("e/churn/head", b"1")
    assert v1 is not None
    store.replace("e/churn/head", b"2", v1)
    assert sent == [("PutObject", "*", None), ("PutObject", None, v1)]
    raw = boto3.client("s3", region_name=REGION, endpoint_url=moto_server)
    body = raw.get_object(Bucket=LEDGER_BUCKET, Key="teams/ml/ledger/e/churn/head")["Body"].read()
    assert body.startswith(b"deployer-ledger-object ") and body.endswith(b"\n2")


def test_the_same_bytes_written_again_get_a_new_version(store: S3LedgerObjects, moto_server: str) -> None:
    """S3's ETag is the MD5 of the body; each object's own first line keeps versions from repeating."""
    v1 = store.create("k", b"same")
    v2 = store.replace("k", b"same", v1 or "")
    assert store.delete("k", v2) and (v3 := store.create("k", b"same"))
    assert len({v1, v2, v3}) == 3 and store.read("k") == (b"same", v3)
    raw = boto3.client("s3", region_name=REGION, endpoint_url=moto_server)
    raw.put_object(Bucket=LEDGER_BUCKET, Key="teams/ml/ledger/by-hand", Body=b"plain")
    assert (store.read("by-hand") or (b"",))[0] == b"plain", "an object written by hand is read whole"


def test_list_reads_every_page(s3_uri: str) -> None:
    store = S3LedgerObjects(s3_uri, page_size=2)
    pages: list[int] = []
    store._s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: pages.append(1))
    ledger_objects.check_list(store, 7)
    assert len(pages) == 4 + 4 + 1, "7 keys at 2 a page are 4 pages, then 8 keys 4 pages, then none 1 page"


def test_the_prefix_isolates_two_ledgers(s3_uri: str) -> None:
    one, two = S3LedgerObjects(s3_uri), S3LedgerObjects(f"s3://{LEDGER_BUCKET}/teams/other")
    ledger_objects.check_prefixes_isolate(one, two)


@pytest.mark.slow
@pytest.mark.timeout(110)
def test_eight_processes_race_one_winner_a_round(s3_uri: str) -> None:
    ledger_objects.race("deployer_aws.ledger:S3LedgerObjects", s3_uri, workers=8, rounds=200).check()


def test_a_missing_bucket_is_a_storage_error(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    store = S3LedgerObjects("s3://no-such-ledger-bucket/p")
    with pytest.raises(StorageError, match="no-such-ledger-bucket"):
        store.create("k", b"x")


@pytest.mark.parametrize("uri", ["s3:///prefix", "gs://bucket/p", "s3://bucket/p?x=1", "bucket/p"])
def test_a_bad_uri_is_refused_before_any_call(uri: str) -> None:
    with pytest.raises(SpecError, match="state.uri"):
        S3LedgerObjects(uri)


def test_construction_makes_no_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    store = S3LedgerObjects("s3://b/p")
    assert (store.bucket, store.prefix, store.uri) == ("b", "p", "s3://b/p")
