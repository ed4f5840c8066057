"""S3 artifact upload throughput: deployer's S3ArtifactStore.put (sha256 in the same read) vs plain
boto3 ``upload_file`` with the same tuned TransferConfig, in the same run, against a
ThreadedMotoServer on loopback. Goal: ratio >= 0.9.

    uv run python benchmarks/s3_upload.py [--mb 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--chunk-mb", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=10)
    args = ap.parse_args()

    for k, v in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(k, v)
    import logging

    import boto3
    from deployer_aws import _sdk
    from deployer_aws.options import AwsOptions
    from deployer_aws.provider import AwsProvider
    from moto.server import ThreadedMotoServer

    from deployer.protocols import ProviderContext
    from deployer.spec import Target

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
        s3.create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.tar.gz"
            with open(path, "wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(args.mb):
                    f.write(block)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            size = path.stat().st_size
            opts = AwsOptions(
                bucket="bench",
                role_arn="arn:aws:iam::123456789012:role/x",
                upload_chunk_mb=args.chunk_mb,
                upload_concurrency=args.concurrency,
            )
            provider = AwsProvider(
                ProviderContext(target=Target(provider="aws", region="us-east-1"), options=opts, home=Path(tmp))
            )
            store = provider.store()
            config = _sdk.transfer_config(args.chunk_mb, args.concurrency)
            raw_times, ours_times = [], []
            for _ in range(args.rounds):
                t = time.perf_counter()
                s3.upload_file(str(path), "bench", "raw/model.tar.gz", Config=config)
                raw_times.append(time.perf_counter() - t)
                s3.delete_object(Bucket="bench", Key="raw/model.tar.gz")

                t = time.perf_counter()
                store.put(path, digest)
                ours_times.append(time.perf_counter() - t)
                store.delete(digest)
            raw, ours = min(raw_times), min(ours_times)
            mb = size / 1e6
            print(f"size: {mb:.0f} MB, parts of {args.chunk_mb} MB, {args.concurrency} threads, {args.rounds} rounds")
            print(f"boto3 upload_file:            {raw:6.2f} s  {mb / raw:7.1f} MB/s")
            print(f"S3ArtifactStore.put (+sha256): {ours:6.2f} s  {mb / ours:7.1f} MB/s")
            print(f"ratio (ours / raw throughput): {raw / ours:.2f}  (goal >= 0.90)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
