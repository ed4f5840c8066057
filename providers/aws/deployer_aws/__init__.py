"""deployer's AWS provider: S3 artifacts, SageMaker endpoints, Application Auto Scaling, CloudWatch.

``import deployer_aws`` imports no SDK; boto3 loads with :mod:`deployer_aws.provider`.
"""

from __future__ import annotations

from deployer_aws.iam import permissions

__all__ = ["permissions"]
