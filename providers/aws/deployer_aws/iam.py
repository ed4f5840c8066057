"""The least-privilege IAM policy for the calls this provider makes. Imports no SDK.

:data:`OPERATIONS` maps every API operation the provider sends (``service:OperationName``, as
botocore names them) to the IAM actions it needs; a test records the operations the provider's
tests actually send and checks this table covers them and holds nothing more. :data:`EXTRA`
lists actions no single call names but AWS checks (with the reason).
"""

from __future__ import annotations

from typing import Any

OPERATIONS: dict[str, tuple[str, ...]] = {
    # artifacts (S3). HeadObject needs s3:ListBucket to answer 404 rather than 403 for a new digest.
    "s3:HeadObject": ("s3:GetObject", "s3:ListBucket"),
    "s3:GetObject": ("s3:GetObject",),
    "s3:PutObject": ("s3:PutObject", "s3:PutObjectTagging"),
    "s3:CreateMultipartUpload": ("s3:PutObject", "s3:PutObjectTagging"),
    "s3:UploadPart": ("s3:PutObject",),
    "s3:CompleteMultipartUpload": ("s3:PutObject",),
    "s3:AbortMultipartUpload": ("s3:AbortMultipartUpload",),
    "s3:DeleteObject": ("s3:DeleteObject",),
    "s3:HeadBucket": ("s3:ListBucket",),
    # the shared ledger (deployer_aws.ledger) also lists its prefix
    "s3:ListObjectsV2": ("s3:ListBucket",),
    "s3:CreateBucket": ("s3:CreateBucket",),
    "s3:PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "s3:PutBucketEncryption": ("s3:PutEncryptionConfiguration",),
    # releases and endpoints (SageMaker); Create* with Tags also needs sagemaker:AddTags
    "sagemaker:CreateModel": ("sagemaker:CreateModel", "sagemaker:AddTags"),
    "sagemaker:DescribeModel": ("sagemaker:DescribeModel",),
    "sagemaker:ListTags": ("sagemaker:ListTags",),
    "sagemaker:DeleteModel": ("sagemaker:DeleteModel",),
    "sagemaker:ListModels": ("sagemaker:ListModels",),
    "sagemaker:CreateEndpointConfig": ("sagemaker:CreateEndpointConfig", "sagemaker:AddTags"),
    "sagemaker:DescribeEndpointConfig": ("sagemaker:DescribeEndpointConfig",),
    "sagemaker:DeleteEndpointConfig": ("sagemaker:DeleteEndpointConfig",),
    "sagemaker:ListEndpointConfigs": ("sagemaker:ListEndpointConfigs",),
    "sagemaker:CreateEndpoint": ("sagemaker:CreateEndpoint", "sagemaker:AddTags"),
    "sagemaker:DescribeEndpoint": ("sagemaker:DescribeEndpoint",),
    "sagemaker:UpdateEndpoint": ("sagemaker:UpdateEndpoint",),
    "sagemaker:UpdateEndpointWeightsAndCapacities": ("sagemaker:UpdateEndpointWeightsAndCapacities",),
    "sagemaker:DeleteEndpoint": ("sagemaker:DeleteEndpoint",),
    "sagemaker-runtime:InvokeEndpoint": ("sagemaker:InvokeEndpoint",),
    # autoscaling
    "application-autoscaling:RegisterScalableTarget": ("application-autoscaling:RegisterScalableTarget",),
    "application-autoscaling:PutScalingPolicy": ("application-autoscaling:PutScalingPolicy",),
    "application-autoscaling:DeregisterScalableTarget": ("application-autoscaling:DeregisterScalableTarget",),
    "application-autoscaling:DescribeScalableTargets": ("application-autoscaling:DescribeScalableTargets",),
    "application-autoscaling:DescribeScalingPolicies": ("application-autoscaling:DescribeScalingPolicies",),
    # metrics and rollback alarms
    "cloudwatch:GetMetricData": ("cloudwatch:GetMetricData",),
    "cloudwatch:PutMetricAlarm": ("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource"),
    "cloudwatch:DescribeAlarms": ("cloudwatch:DescribeAlarms",),
    "cloudwatch:DeleteAlarms": ("cloudwatch:DeleteAlarms",),
}

EXTRA: dict[str, str] = {
    "iam:PassRole": "CreateModel passes provider_options.role_arn to SageMaker",
    "iam:CreateServiceLinkedRole": "the first RegisterScalableTarget creates the SageMaker autoscaling role",
    "cloudwatch:PutMetricAlarm": "target-tracking policies create their alarms as the caller",
    "cloudwatch:DeleteAlarms": "deregistering a scalable target deletes its policies' alarms",
}


KMS_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
"""With ``sse: aws:kms``: S3 asks KMS for a data key on every upload and decrypts it for multipart
parts and downloads ("you must have permission to the kms:Decrypt and kms:GenerateDataKey actions":
https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html)."""


def _service(action: str) -> str:
    return action.split(":", 1)[0]


def actions() -> set[str]:
    """Every IAM action in the policy."""
    return {a for acts in OPERATIONS.values() for a in acts} | set(EXTRA)


def permissions(
    bucket: str | None = None,
    prefix: str = "deployer",
    role_arn: str | None = None,
    region: str = "*",
    account: str = "*",
    kms_key_arn: str | None = None,
    state: str | None = None,
) -> dict[str, Any]:
    """An IAM policy document (JSON-ready dict) for the aws provider.

    With ``bucket`` / ``role_arn`` the S3 and PassRole statements name those resources; SageMaker,
    Application Auto Scaling and CloudWatch actions are scoped to this account and region where the
    service supports resource-level permissions. ``kms_key_arn`` (for ``sse: aws:kms``) adds the
    KMS actions S3 needs on that key (:data:`KMS_ACTIONS`). ``state`` (an ``s3://BUCKET/PREFIX`` shared
    ledger, ``--state`` / ``DEPLOYER_STATE``) adds :func:`ledger_statements` for that prefix.
    """
    acts = actions()
    by_service: dict[str, list[str]] = {}
    for a in sorted(acts):
        by_service.setdefault(_service(a), []).append(a)
    objects = f"arn:aws:s3:::{bucket}/{prefix.strip('/')}/*" if bucket else "arn:aws:s3:::*/*"
    bucket_arn = f"arn:aws:s3:::{bucket}" if bucket else "arn:aws:s3:::*"
    s3_object = sorted(a for a in by_service.get("s3", []) if "Object" in a or "Multipart" in a)
    s3_bucket = sorted(a for a in by_service.get("s3", []) if a not in s3_object)
    sm = f"arn:aws:sagemaker:{region}:{account}"
    statements: list[dict[str, Any]] = [
        {"Sid": "ArtifactObjects", "Effect": "Allow", "Action": s3_object, "Resource": [objects]},
        {"Sid": "ArtifactBucket", "Effect": "Allow", "Action": s3_bucket, "Resource": [bucket_arn]},
        {
            "Sid": "SageMakerEndpoints",
            "Effect": "Allow",
            "Action": sorted(a for a in by_service.get("sagemaker", []) if not a.startswith("sagemaker:List")),
            "Resource": [f"{sm}:model/*", f"{sm}:endpoint-config/*", f"{sm}:endpoint/*"],
        },
        {
            "Sid": "SageMakerList",
            "Effect": "Allow",
            "Action": sorted(a for a in by_service.get("sagemaker", []) if a.startswith("sagemaker:List")),
            "Resource": ["*"],
        },
        {
            "Sid": "Autoscaling",
            "Effect": "Allow",
            "Action": by_service.get("application-autoscaling", []),
            "Resource": ["*"],
        },
        {"Sid": "Metrics", "Effect": "Allow", "Action": by_service.get("cloudwatch", []), "Resource": ["*"]},
        {
            "Sid": "PassExecutionRole",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [role_arn or "arn:aws:iam::*:role/*"],
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        },
        {
            "Sid": "AutoscalingServiceRole",
            "Effect": "Allow",
            "Action": ["iam:CreateServiceLinkedRole"],
            "Resource": ["arn:aws:iam::*:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/*"],
            "Condition": {"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
        },
    ]
    if kms_key_arn:
        statements.append(
            {
                "Sid": "ArtifactEncryptionKey",
                "Effect": "Allow",
                "Action": list(KMS_ACTIONS),
                "Resource": [kms_key_arn],
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}
                if region != "*"
                else {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}},
            }
        )
    if state and state.startswith("s3://"):
        statements.extend(ledger_statements(state))
    return {"Version": "2012-10-17", "Statement": statements}


LEDGER_ACTIONS = ("s3:DeleteObject", "s3:GetObject", "s3:PutObject")
"""What :class:`deployer_aws.ledger.S3LedgerObjects` sends: GetObject, conditional PutObject and DeleteObject
(conditional writes need no other action: https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html),
and ListObjectsV2, which is ``s3:ListBucket`` on the bucket."""


def ledger_statements(state: str) -> list[dict[str, Any]]:
    """Read, write and delete under the ledger's prefix, and list only that prefix (the ``s3:prefix``
    condition key: https://docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html)."""
    bucket, _, prefix = state.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    under = f"{prefix}/" if prefix else ""
    return [
        {
            "Sid": "LedgerObjects",
            "Effect": "Allow",
            "Action": list(LEDGER_ACTIONS),
            "Resource": [f"arn:aws:s3:::{bucket}/{under}*"],
        },
        {
            "Sid": "LedgerList",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
            "Condition": {"StringLike": {"s3:prefix": [f"{under}*"]}},
        },
    ]
