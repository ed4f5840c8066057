"""GCS artifact upload and Vertex AI call counts, measured against gcp-storage-emulator (and the Vertex AI fake of
tests/gcp) on loopback, in one run:

1. throughput of GcsArtifactStore.put (resumable, sha256 in the same read) vs the raw google-cloud-storage client
   uploading the same file with the same chunk size (``blob.upload_from_filename``). Goal: ratio >= 0.9.
2. an unchanged redeploy: bytes uploaded and API calls (goal: 0 bytes, the fewest reads).
3. API calls per canary step.

    uv run --all-packages python benchmarks/gcs_upload.py [--mb 500] [--rounds 2] [--chunk-mb 16]

The emulator keeps objects in memory and serves one request at a time; the default size is 128 MB so the run is short.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import compare_uploads  # noqa: E402


def upload(args: argparse.Namespace, tmp: Path) -> None:
    from deployer_gcp import _sdk
    from deployer_gcp.options import GcpOptions
    from deployer_gcp.store import GcsArtifactStore
    from google.cloud import storage

    path = tmp / "model.tar.gz"
    with open(path, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(args.mb):
            f.write(block)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    store = GcsArtifactStore(
        _sdk.Clients("bench", "us-central1"), GcpOptions(bucket="bench", upload_chunk_mb=args.chunk_mb)
    )
    bucket = storage.Client(project="bench").bucket("bench")
    blob = bucket.blob("raw/model.tar.gz", chunk_size=args.chunk_mb * 1024 * 1024)
    compare_uploads(
        path,
        digest,
        store,
        lambda: blob.upload_from_filename(str(path)),
        blob.delete,
        args.rounds,
        ("google-cloud-storage upload_from_filename:", "GcsArtifactStore.put (+sha256):"),
        f"resumable chunks of {args.chunk_mb} MB",
    )


def calls(tmp: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from google.cloud import storage

    from deployer.spec import Spec
    from deployer.testing import Harness, make_model
    from tests.gcp.fake_server import FakeServer
    from tests.gcp.fake_vertex import VertexFake

    fake = VertexFake("bench-project", "us-central1", tmp / "served", storage.Client(project="bench"), pending_polls=3)
    with FakeServer(fake) as server:
        os.environ["DEPLOYER_HOME"] = str(tmp / "home")

        def spec(seed: int, **extra: object) -> Spec:
            return Spec.model_validate({
                "name": "bench",
                "target": {"provider": "gcp", "project": "bench-project", "region": "us-central1"},
                "model": {"path": str(make_model(tmp / "models", seed)), "flavor": "sklearn"},
                "provider_options": {"bucket": "bench", "api_endpoint": server.url,
                                     "monitoring_endpoint": server.monitoring.url,
                                     "image": "us-docker.pkg.dev/p/r/serving:1"},
                "state": {"path": str(tmp / "ledger.db")},
                **extra,
            })

        import requests

        gcs = Counter[str]()
        send = requests.Session.send

        def counted(self: requests.Session, request: requests.PreparedRequest, **kw: object) -> requests.Response:
            if request.url and request.url.startswith(os.environ["STORAGE_EMULATOR_HOST"]):
                gcs[str(request.method)] += 1
            return send(self, request, **kw)  # type: ignore[arg-type]

        requests.Session.send = counted  # type: ignore[method-assign]
        h = Harness(tmp / "ledger.db")
        h.deploy(spec(1))
        before = Counter(fake.calls)
        gcs.clear()
        h.deploy(spec(1))
        used = Counter(fake.calls)
        used.subtract(before)
        rec = h.recorder
        assert rec is not None
        print(f"unchanged redeploy: {rec.bytes_uploaded} bytes uploaded, provider writes {rec.writes}, "
              f"Vertex API calls {sum(used.values())} ({dict(+used)}), GCS requests {dict(gcs)}")
        steps = [{"weight": w, "bake_s": 0} for w in (10, 25, 50, 100)]
        before = Counter(fake.calls)
        h.deploy(spec(2, strategy={"type": "canary", "steps": steps}))
        used = Counter(fake.calls)
        used.subtract(before)
        routes = used["endpoints.patch"]
        print(f"canary of {len(steps)} steps (new release uploaded and deployed): {sum(used.values())} API calls "
              f"({dict(+used)}); {routes} traffic writes, one per step")
        h.destroy(spec(2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--chunk-mb", type=int, default=16)
    args = ap.parse_args()
    from gcp_storage_emulator.server import create_server

    srv = create_server("127.0.0.1", 0, in_memory=True, default_bucket="bench")
    srv.start()
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{srv._api._httpd.server_address[1]}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            upload(args, Path(tmp))
            calls(Path(tmp))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
