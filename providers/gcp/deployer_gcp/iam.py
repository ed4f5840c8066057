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


LEDGER_PERMISSIONS = ("storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list")
"""What :class:`deployer_gcp.ledger.GcsLedgerObjects` sends: objects.insert / get / delete / list (the rows of
:data:`OPERATIONS` for Cloud Storage; preconditions need no other permission)."""


def permissions(
    bucket: str | None = None, prefix: str = "deployer", state: str | None = None, **_: Any
) -> dict[str, Any]:
    """Predefined roles that cover the provider, and the exact permissions for a custom role. ``state`` (a
    ``gs://BUCKET/PREFIX`` shared ledger) adds where the ledger lives and the IAM condition that confines the
    role's object permissions to its prefix (https://cloud.google.com/storage/docs/access-control/iam#conditions);
    objects.list is checked on the bucket, so the condition lets bucket-level checks through."""
    exact = sorted({p for perms in OPERATIONS.values() for p in perms} | set(EXTRA))
    out: dict[str, Any] = {
        "roles": ROLES,
        "custom_role": {"title": "deployer", "includedPermissions": exact},
        "bucket": f"gs://{bucket}/{prefix.strip('/')}/" if bucket else "gs://BUCKET/deployer/",
        "notes": EXTRA,
    }
    if state and state.startswith("gs://"):
        ledger_bucket, _slash, ledger_prefix = state.removeprefix("gs://").partition("/")
        under = f"{ledger_prefix.strip('/')}/" if ledger_prefix.strip("/") else ""
        out["ledger"] = {
            "location": f"gs://{ledger_bucket}/{under}",
            "role": "roles/storage.objectUser",
            "permissions": list(LEDGER_PERMISSIONS),
            "condition": f'resource.name.startsWith("projects/_/buckets/{ledger_bucket}/objects/{under}") || '
            f'resource.type == "storage.googleapis.com/Bucket"',
        }
    return out
