"""BlobLedgerObjects against Azurite on 127.0.0.1: conditional create / replace / delete, paging, 8 processes
racing, the URI forms and the errors."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient
from conftest import ACCOUNT
from deployer_azure.ledger import BlobLedgerObjects

from deployer.errors import SpecError, StorageError
from deployer.testing import ledger_objects

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def az_uri(azurite: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh container per test (Azurite lives for the session)."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    container = "ledger-" + request.node.name.replace("_", "-")[:40].strip("-").lower()
    BlobServiceClient.from_connection_string(azurite).create_container(container)
    return f"az://{ACCOUNT}/{container}/teams/ml/ledger"


@pytest.fixture
def store(az_uri: str) -> BlobLedgerObjects:
    return BlobLedgerObjects(az_uri)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, str]]]:
    """(method, query, conditional headers) of every Blob request the test sends."""
    out: list[tuple[str, str, dict[str, str]]] = []
    orig = RequestsTransport.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        cond = {k: v for k, v in request.headers.items() if k.lower() in ("if-match", "if-none-match")}
        out.append((request.method, urllib.parse.urlsplit(request.url).query, cond))
        return orig(self, request, **kwargs)

    monkeypatch.setattr(RequestsTransport, "send", send)
    return out


class TestBlobLedgerObjects(ledger_objects.LedgerObjectsChecks):
    """create twice, replace and delete with stale versions (deployer.testing.ledger_objects)."""


def test_every_write_is_one_conditional_put(store: BlobLedgerObjects, sent: list[tuple[str, str, Any]]) -> None:
    v1 = store.create("e/churn/head", b"1")
    assert v1 is not None
    v2 = store.replace("e/churn/head", b"2", v1)
    assert v2 is not None
    assert [(m, c) for m, _, c in sent] == [("PUT", {"If-None-Match": "*"}), ("PUT", {"If-Match": v1})]
    assert store.read("e/churn/head") == (b"2", v2)


def test_list_reads_every_page(az_uri: str, sent: list[tuple[str, str, Any]]) -> None:
    store = BlobLedgerObjects(az_uri, page_size=2)
    ledger_objects.check_list(store, 7)
    lists = [q for m, q, _ in sent if m == "GET" and "comp=list" in q]
    assert len(lists) == 4 + 4 + 1, "7 keys at 2 a page, then 8 keys, then none"


def test_the_prefix_isolates_two_ledgers(az_uri: str) -> None:
    other = az_uri.replace("/teams/ml/ledger", "/teams/other")
    one, two = BlobLedgerObjects(az_uri), BlobLedgerObjects(other)
    ledger_objects.check_prefixes_isolate(one, two)


@pytest.mark.slow
@pytest.mark.timeout(110)
def test_eight_processes_race_one_winner_a_round(az_uri: str) -> None:
    ledger_objects.race("deployer_azure.ledger:BlobLedgerObjects", az_uri, workers=8, rounds=200).check()


def test_a_missing_container_is_a_storage_error(azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    store = BlobLedgerObjects(f"az://{ACCOUNT}/no-such-ledger/p")
    with pytest.raises(StorageError, match="no-such-ledger"):
        store.create("k", b"x")
    with pytest.raises(StorageError, match="no-such-ledger"):
        store.list("")


def test_the_https_form_names_the_same_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    store = BlobLedgerObjects("https://acct.blob.core.windows.net/ledger/teams/ml/")
    assert (store.account, store.container, store.prefix) == ("acct", "ledger", "teams/ml")
    assert (BlobLedgerObjects("az://acct/ledger").prefix) == ""


@pytest.mark.parametrize(
    "uri",
    ["az://acct", "az:///c/p", "https://example.com/c/p", "s3://b/p", "az://acct/c/p?x=1", "acct/c/p"],
)
def test_a_bad_uri_is_refused_before_any_call(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(SpecError, match="state.uri"):
        BlobLedgerObjects(uri)


def test_a_connection_string_to_another_account_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=other;AccountKey=a2V5;EndpointSuffix=x")
    with pytest.raises(SpecError, match="other"):
        BlobLedgerObjects("az://acct/ledger/p")
