"""``s3://bucket/key`` model sources (``model.uri``), registered as the ``s3`` entry point of
``deployer.sources``. The version tag is the object's ETag (and VersionId on versioned buckets), read
with one HeadObject; the download uses boto3's managed transfer with progress."""

from __future__ import annotations

from pathlib import Path

from deployer.sources import ProgressFn, split_object
from deployer_aws import _sdk
from deployer_aws.errors import aws_errors


def _split(uri: str) -> tuple[str, str]:
    return split_object(uri, "s3://BUCKET/path/to/model.joblib")


class S3Source:
    """Reads models from S3 with the standard credential chain (nothing is stored)."""

    def __init__(self) -> None:
        clients = _sdk.Clients(None)
        try:
            clients.region  # noqa: B018 - the configured region, if any
        except _sdk.NoRegionError:
            clients = _sdk.Clients("us-east-1")  # S3 answers for any bucket's region from here
        self._clients = clients

    def version(self, uri: str) -> str | None:
        bucket, key = _split(uri)
        with aws_errors("HeadObject"):
            head = self._clients.client("s3").head_object(Bucket=bucket, Key=key)
        return f"{head.get('ETag', '')}:{head.get('VersionId', '')}:{head.get('ContentLength', 0)}"

    def download(self, uri: str, dest: Path, on_progress: ProgressFn | None = None) -> Path:
        bucket, key = _split(uri)
        target = dest / Path(key).name
        s3 = self._clients.client("s3")
        with aws_errors("HeadObject"):
            total = int(s3.head_object(Bucket=bucket, Key=key).get("ContentLength", 0))
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if on_progress:
                on_progress(done, total)

        with aws_errors("GetObject"):
            s3.download_file(bucket, key, str(target), Callback=progress, Config=_sdk.transfer_config(16, 8))
        return target
