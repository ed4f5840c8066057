"""GcsLedgerObjects against the in-repo Cloud Storage fake (generation preconditions honoured) over HTTP on
127.0.0.1: conditional create / replace / delete, paging, 8 processes racing, the URI and the errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from deployer_gcp.ledger import GcsLedgerObjects

from deployer.errors import SpecError, StorageError
from deployer.testing import ledger_objects

from .conftest import RECORDED, Emulator
from .fake_gcs_ledger import FakeGcs, FakeGcsServer

pytestmark = pytest.mark.timeout(60)

LEDGER_BUCKET = "deployer-ledger"


@pytest.fixture(scope="module")
def gcs_server() -> Iterator[FakeGcsServer]:
    with FakeGcsServer(FakeGcs({LEDGER_BUCKET})) as server:
        yield server


@pytest.fixture
def fake(gcs_server: FakeGcsServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGcs]:
    gcs_server.fake.objects.clear()
    gcs_server.fake.calls.clear()
    gcs_server.fake.errors.clear()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    yield gcs_server.fake
    RECORDED.update(f"storage.{name}" for name in gcs_server.fake.calls)
    assert not gcs_server.fake.errors, gcs_server.fake.errors


@pytest.fixture
def gs_uri(fake: FakeGcs) -> str:
    return f"gs://{LEDGER_BUCKET}/teams/ml/ledger"


@pytest.fixture
def store(gs_uri: str) -> GcsLedgerObjects:
    return GcsLedgerObjects(gs_uri)


def test_the_emulator_ignores_generation_preconditions(storage_emulator: Emulator) -> None:
    """Why the fake exists: gcp-storage-emulator accepts a second insert with ifGenerationMatch=0. When it
    refuses it, this fails, and the emulator can serve these tests instead."""
    from google.cloud import storage

    from .conftest import BUCKET

    blob = storage.Client().bucket(BUCKET).blob("ledger-precondition-probe")
    blob.upload_from_string(b"1", if_generation_match=0)
    blob.upload_from_string(b"2", if_generation_match=0)
    assert blob.download_as_bytes() == b"2"
    blob.delete()


class TestGcsLedgerObjects(ledger_objects.LedgerObjectsChecks):
    """create twice, replace and delete with stale versions (deployer.testing.ledger_objects)."""


def test_every_write_is_one_conditional_insert(store: GcsLedgerObjects, fake: FakeGcs) -> None:
    v1 = store.create("e/churn/head", b"1")
    assert v1 is not None
    v2 = store.replace("e/churn/head", b"2", v1)
    assert fake.calls == {"objects.insert": 2}
    stored = fake.objects[(LEDGER_BUCKET, "teams/ml/ledger/e/churn/head")]
    assert (stored.data, str(stored.generation)) == (b"2", v2)
    assert store.read("e/churn/head") == (b"2", v2)
    assert fake.calls == {"objects.insert": 2, "objects.get": 1}, "a read is one media download"


def test_list_reads_every_page(gs_uri: str, fake: FakeGcs) -> None:
    store = GcsLedgerObjects(gs_uri, page_size=2)
    ledger_objects.check_list(store, 7)
    assert fake.calls["objects.list"] == 4 + 4 + 1, "7 keys at 2 a page, then 8 keys, then none"


def test_the_prefix_isolates_two_ledgers(gs_uri: str) -> None:
    one, two = GcsLedgerObjects(gs_uri), GcsLedgerObjects(f"gs://{LEDGER_BUCKET}/teams/other")
    ledger_objects.check_prefixes_isolate(one, two)


@pytest.mark.slow
@pytest.mark.timeout(110)
def test_eight_processes_race_one_winner_a_round(gs_uri: str) -> None:
    ledger_objects.race("deployer_gcp.ledger:GcsLedgerObjects", gs_uri, workers=8, rounds=200).check()


def test_a_missing_bucket_is_a_storage_error(fake: FakeGcs) -> None:
    store = GcsLedgerObjects("gs://no-such-ledger-bucket/p")
    assert store.read("k") is None
    with pytest.raises(StorageError, match="no-such-ledger-bucket"):
        store.create("k", b"x")
    with pytest.raises(StorageError, match="no-such-ledger-bucket"):
        store.list("")


@pytest.mark.parametrize("uri", ["gs:///prefix", "s3://bucket/p", "gs://bucket/p?x=1", "bucket/p"])
def test_a_bad_uri_is_refused_before_any_call(uri: str) -> None:
    with pytest.raises(SpecError, match="state.uri"):
        GcsLedgerObjects(uri)


def test_construction_makes_no_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens there
    store = GcsLedgerObjects("gs://b/p")
    assert (store.bucket, store.prefix, store.uri) == ("b", "p", "gs://b/p")
