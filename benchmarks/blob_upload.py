"""Azure: Blob artifact upload throughput, and API calls of an unchanged redeploy and of a canary step.

1. ``BlobArtifactStore.put`` (staged blocks in parallel, sha256 in the same read, Content-MD5 on every block)
   against the raw azure-storage-blob client (``upload_blob`` with the same block size and concurrency, no
   hashing) on the same Azurite, in the same run. Goal: ratio >= 0.9.
2. Through the engine against Azurite and tests/azure/armfake.py: bytes uploaded and API calls (ARM and Blob)
   of an unchanged redeploy, and API calls per canary step.

    uv run --all-packages python benchmarks/blob_upload.py [--mb 500] [--rounds 2] [--skip-engine]

Azurite comes from ``~/.cache/deployer-azurite`` (``npm install azurite@3.35.0`` there when missing).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "azure"))
sys.path.insert(0, str(ROOT))

from benchmarks._common import compare_uploads  # noqa: E402


def upload(args: argparse.Namespace, conn: str, tmp: Path) -> None:
    from azure.storage.blob import BlobServiceClient
    from helpers import make_provider

    path = tmp / "model.tar.gz"
    with open(path, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(args.mb):
            f.write(block)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    size = path.stat().st_size
    store = make_provider(
        tmp / "home", container="bench", block_size_mb=args.block_mb, upload_concurrency=args.concurrency
    ).store()
    raw_client = BlobServiceClient.from_connection_string(
        conn, max_block_size=args.block_mb << 20, max_single_put_size=args.block_mb << 20
    ).get_blob_client("bench", "raw/model.tar.gz")
    store.put(tmp / "model.tar.gz", digest)  # creates the container, warms the connections
    store.delete(digest)
    compare_uploads(
        path,
        digest,
        store,
        lambda: _put_raw(raw_client, path, args.concurrency, size),
        raw_client.delete_blob,
        args.rounds,
        ("azure-storage-blob upload_blob:", "BlobArtifactStore.put (+sha256, MD5s):"),
        f"blocks of {args.block_mb} MB, {args.concurrency} threads",
    )


def _put_raw(client: Any, path: Path, concurrency: int, size: int) -> None:
    with open(path, "rb") as f:
        client.upload_blob(f, overwrite=True, max_concurrency=concurrency, length=size)


def engine(tmp: Path) -> None:
    from armfake import ArmFake, Server
    from conftest import TARGET, fetch_blob

    from deployer.testing import ConformanceTarget, Harness, make_model

    fake = ArmFake(fetch=fetch_blob(os.environ["AZURE_STORAGE_CONNECTION_STRING"]))
    with Server(fake) as server:
        os.environ.update(
            DEPLOYER_AZURE_ENDPOINT_URL=server.url, DEPLOYER_AZURE_TOKEN="bench", DEPLOYER_HOME=str(tmp / "home")
        )
        ct = ConformanceTarget(target=TARGET, ledger_path=tmp / "ledger.db", provider_options={"container": "models"})
        h = Harness(ct.ledger_path)
        spec = ct.spec("bench-az", make_model(tmp / "m", 1))
        h.deploy(spec)

        before = len(fake.calls)
        out = h.deploy(spec)  # a new provider: its store counts from zero
        rec = h.recorder
        assert rec is not None and out.outcome == "unchanged"
        print(
            f"unchanged redeploy: {rec.bytes_uploaded} bytes uploaded, {rec.writes} provider writes, "
            f"{len(fake.calls) - before} ARM calls, {rec.store()._inner.calls} Blob calls "
            f"(first deploy: {before} ARM calls)"
        )

        steps = [{"weight": w, "bake_s": 0} for w in (10, 25, 50, 100)]
        v2 = ct.spec("bench-az", make_model(tmp / "m", 2), strategy={"type": "canary", "steps": steps})
        h.deploy(v2)  # warm: uploads, registers and deploys r0002, then walks the steps
        v3 = ct.spec("bench-az", make_model(tmp / "m", 3), strategy={"type": "canary", "steps": steps})
        before = len(fake.calls)
        h.deploy(v3)
        rec = h.recorder
        assert rec is not None
        new = fake.calls[before:]
        routes = len([c for c in new if c.startswith("PUT") and c.endswith("/onlineEndpoints/bench-az")])
        total = len(new)
        print(
            f"canary of {len(steps)} steps: {total} ARM calls in all, {routes} traffic updates, "
            f"{rec.calls['route']} route calls, {rec.calls['poll']} polls; "
            f"{total / len(steps):.1f} ARM calls per step"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--block-mb", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--skip-engine", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        from conftest import start_azurite, stop  # tests/azure/conftest.py

        proc, conn = start_azurite(tmp / "azurite.log")
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = conn
        try:
            upload(args, conn, tmp)
            if not args.skip_engine:
                engine(tmp)
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
