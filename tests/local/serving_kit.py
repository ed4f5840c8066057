"""Deploy a model directory to a local endpoint through the real packaging path (with ``spec.serving``)."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from deployer.artifacts import Model, identify, upload
from deployer.local.provider import LocalProvider
from deployer.local.state import read_json
from deployer.records import Release, Traffic
from deployer.spec import Resources, Serving

from .conftest import wait


def deploy(
    provider: LocalProvider,
    src: Path,
    rid: str = "r0001",
    *,
    endpoint: str = "svc",
    serving: Serving | None = None,
    flavor: str = "sklearn",
    entrypoint: str | None = None,
    replicas: int = 1,
    traffic: Traffic | None = None,
    packaged: Model | None = None,
) -> str:
    """Package ``src`` with ``serving`` (or take ``packaged``), deploy it as ``rid``, wait until it serves; the URL."""
    packaged = packaged or identify(src, serving=serving or Serving(), flavor=flavor)
    ref = upload(packaged, provider.store())
    release = Release(
        id=rid,
        endpoint=endpoint,
        fingerprint=f"fp-{rid}",
        artifact=ref,
        flavor=flavor,  # type: ignore[arg-type]
        entrypoint=entrypoint,
        resources=Resources(replicas=replicas),
    )
    status = wait(provider, provider.deploy_release(release, traffic or Traffic.all_to(rid)), timeout=60)
    assert status.state == "succeeded", status.message
    obs = provider.observe(endpoint)
    assert obs is not None and obs.url
    return obs.url


def workers(provider: LocalProvider, endpoint: str = "svc") -> list[int]:
    state = read_json(provider.paths(endpoint).state) or {}
    return [int(p) for p in state.get("workers", [])]


def fresh_post(url: str, body: object, timeout: float = 10.0) -> tuple[int, Any]:
    """(status, decoded body) of one request on a new connection (a worker stopping between requests cannot drop it)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=timeout)
    try:
        conn.request("POST", "/predict", body=orjson.dumps(body), headers={"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, orjson.loads(resp.read())
    finally:
        conn.close()
