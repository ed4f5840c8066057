"""Try the aws provider offline: moto on 127.0.0.1 with the SageMaker behaviour deployer relies on.

A plain moto server lacks ``UpdateEndpoint``, has endpoints ``InService`` at once, accepts duplicate
names and answers ``InvokeEndpoint`` with a canned body (docs/providers/aws.md lists the gaps).
:func:`start` runs moto's server in this process with :mod:`deployer_aws.testing.sagemaker` installed:
requests are checked against botocore's SageMaker model, changes take several DescribeEndpoint polls,
UpdateEndpoint exists, and InvokeEndpoint runs the model for real, its metrics reaching CloudWatch
after SageMaker's publication delay. The project's own tests run on the same fake.

From a shell (``pip install 'mldeployer-aws[testing]'``)::

    python -m deployer_aws.testing --bucket deployer-models
    # prints the variables to export, then serves until Ctrl-C

From Python::

    with deployer_aws.testing.running(bucket="deployer-models") as aws:
        os.environ.update(aws.env())
        deployer.apply("churn-aws.yaml")

Importing this module imports moto (the ``testing`` extra); the provider itself never does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deployer_aws.testing.sagemaker import FAKE, SageMakerFake, install, uninstall

DEFAULT_REGION = "us-east-1"

__all__ = ["FAKE", "OfflineAws", "SageMakerFake", "install", "running", "start", "uninstall"]


@dataclass
class OfflineAws:
    """A running moto server with the SageMaker additions; :meth:`env` is what a client needs."""

    url: str
    region: str
    server: Any

    def env(self) -> dict[str, str]:
        """Environment for boto3 and the deployer CLI: the endpoint URL, a region and dummy credentials
        (moto accepts any; they are not secrets)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def reset(self) -> None:
        """Forget every resource (moto's ``/moto-api/reset``) and the fake's switches."""
        import requests

        requests.post(f"{self.url}/moto-api/reset", timeout=10)
        FAKE.reset()

    def create_bucket(self, bucket: str) -> None:
        from deployer_aws import _sdk

        env = self.env()
        _sdk.boto3.client(
            "s3",
            region_name=self.region,
            endpoint_url=self.url,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=bucket)

    def stop(self) -> None:
        self.server.stop()


def start(port: int = 0, region: str = DEFAULT_REGION, bucket: str | None = None) -> OfflineAws:
    """Start moto's server on 127.0.0.1 (``port`` 0: a free one) with the SageMaker additions installed;
    create ``bucket`` when given. Stop it with :meth:`OfflineAws.stop`."""
    from moto.server import ThreadedMotoServer

    install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    aws = OfflineAws(url=f"http://{host}:{bound}", region=region, server=server)
    if bucket:
        aws.create_bucket(bucket)
    return aws


@contextlib.contextmanager
def running(port: int = 0, region: str = DEFAULT_REGION, bucket: str | None = None) -> Iterator[OfflineAws]:
    """:func:`start` for the duration of a ``with`` block."""
    aws = start(port, region, bucket)
    try:
        yield aws
    finally:
        aws.stop()
