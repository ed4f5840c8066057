"""What the aws provider can do (``Capabilities``), with the reasons for what it cannot."""

from __future__ import annotations

from deployer.records import Capabilities
from deployer_aws.options import AwsOptions

METRICS_GRANULARITY_S = 60.0
"""SageMaker publishes invocation metrics every 60 s (MetricsConfig.MetricPublishFrequencyInSeconds:
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_MetricsConfig.html)."""
METRICS_DELAY_S = 120.0
"""How long a minute's datapoint may take to appear in CloudWatch after the minute ends. SageMaker
aggregates per minute before it publishes (https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html),
and CloudWatch makes a datapoint readable only after ingestion; two minutes is the margin deployer waits."""


def capabilities(opts: AwsOptions) -> Capabilities:
    unsupported = {
        "scale_to_zero": "SageMaker real-time variants keep at least one instance; "
        "scale to zero needs inference components, which deployer does not use",
        "shadow": "SageMaker shadow variants need shadow tests (ShadowProductionVariants), which deployer does not use",
    }
    if opts.serverless is not None:
        unsupported["autoscaling"] = "serverless endpoints scale by concurrency (serverless.max_concurrency)"
        unsupported["native_rollout"] = "SageMaker deployment guardrails do not support serverless endpoints"
    return Capabilities(
        traffic_split=True,
        autoscaling=opts.serverless is None,
        scale_to_zero=False,
        metrics=True,
        native_rollout=opts.serverless is None,
        container_images=True,
        shadow=False,
        metrics_granularity_s=METRICS_GRANULARITY_S,
        metrics_delay_s=METRICS_DELAY_S,
        unsupported=unsupported,
    )
