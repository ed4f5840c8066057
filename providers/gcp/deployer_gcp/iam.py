"""The roles and exact IAM permissions the gcp provider's calls need. Imports no SDK.

:data:`OPERATIONS` maps every API method the provider calls (the names the tests record at the fakes)
to the permissions it needs (https://cloud.google.com/vertex-ai/docs/general/access-control,
https://cloud.google.com/storage/docs/access-control/iam-permissions,
https://cloud.google.com/monitoring/access-control). A test checks the table against the methods the
tests actually send, in both directions. :data:`EXTRA` lists what no single call names but Google checks.
"""

from __future__ import annotations

from typing import Any

OPERATIONS: dict[str, tuple[str, ...]] = {
    # artifacts (Cloud Storage)
    "storage.objects.get": ("storage.objects.get",),
    "storage.objects.insert": ("storage.objects.create",),
    "storage.objects.delete": ("storage.objects.delete",),
    "storage.objects.list": ("storage.objects.list",),
    # releases (Vertex AI Model Registry)
    "models.upload": ("aiplatform.models.upload",),
    "models.listVersions": ("aiplatform.models.list",),
    "models.patch": ("aiplatform.models.update",),
    "models.delete": ("aiplatform.models.delete",),
    # endpoints, traffic and scale (Vertex AI endpoints)
    "endpoints.get": ("aiplatform.endpoints.get",),
    "endpoints.post": ("aiplatform.endpoints.create",),
    "endpoints.delete": ("aiplatform.endpoints.delete",),
    "endpoints.deployModel": ("aiplatform.endpoints.deploy", "aiplatform.models.deploy"),
    "endpoints.undeployModel": ("aiplatform.endpoints.undeploy",),
    "endpoints.mutateDeployedModel": ("aiplatform.endpoints.update",),
    "endpoints.patch": ("aiplatform.endpoints.update",),
    "endpoints.predict": ("aiplatform.endpoints.predict",),
    "operations.get": ("aiplatform.operations.get",),
    # gate metrics (Cloud Monitoring)
    "monitoring.timeSeries.list": ("monitoring.timeSeries.list",),
}

EXTRA: dict[str, str] = {
    "iam.serviceAccounts.actAs": "provider_options.service_account: the serving containers run as that account",
}

ROLES: dict[str, str] = {
    "roles/aiplatform.user": "models, endpoints, deploy / undeploy, predict, operations",
    "roles/storage.objectUser": "artifacts in the bucket (get, create, delete, list)",
    "roles/monitoring.viewer": "Cloud Monitoring time series for gates",
    "roles/iam.serviceAccountUser": "only with provider_options.service_account (on that account)",
    "roles/cloudkms.cryptoKeyEncrypterDecrypter": "only with kms_key_name: granted to the Vertex AI and Cloud "
    "Storage service agents on the key",
}


def permissions(bucket: str | None = None, prefix: str = "deployer", **_: Any) -> dict[str, Any]:
    """Predefined roles that cover the provider, and the exact permissions for a custom role."""
    exact = sorted({p for perms in OPERATIONS.values() for p in perms} | set(EXTRA))
    return {
        "roles": ROLES,
        "custom_role": {"title": "deployer", "includedPermissions": exact},
        "bucket": f"gs://{bucket}/{prefix.strip('/')}/" if bucket else "gs://BUCKET/deployer/",
        "notes": EXTRA,
    }
