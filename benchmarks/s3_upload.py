"""S3 artifact upload throughput: deployer's S3ArtifactStore.put (sha256 in the same read) vs plain
boto3 ``upload_file`` with the same tuned TransferConfig, in the same run, against a
ThreadedMotoServer on loopback. Goal: ratio >= 0.9.

    uv run python benchmarks/s3_upload.py [--mb 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import compare_uploads  # noqa: E402


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
            compare_uploads(
                path,
                digest,
                store,
                lambda: s3.upload_file(str(path), "bench", "raw/model.tar.gz", Config=config),
                lambda: s3.delete_object(Bucket="bench", Key="raw/model.tar.gz"),
                args.rounds,
                ("boto3 upload_file:", "S3ArtifactStore.put (+sha256):"),
                f"parts of {args.chunk_mb} MB, {args.concurrency} threads",
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
