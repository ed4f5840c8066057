"""The custom Azure role for the calls this provider makes. Imports no SDK.

:data:`OPERATIONS` maps every REST operation the provider sends (``service:METHOD resource``, the resource
type path of the URL after the workspace, or the Blob operation) to the Azure RBAC actions it needs
(https://learn.microsoft.com/azure/role-based-access-control/permissions/ai-machine-learning,
https://learn.microsoft.com/azure/role-based-access-control/permissions/monitor,
https://learn.microsoft.com/azure/role-based-access-control/permissions/storage). A test records the
operations the provider's tests actually send and checks this table covers them and holds nothing more.
"""

from __future__ import annotations

from typing import Any

ML = "Microsoft.MachineLearningServices/workspaces"
BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers"

OPERATIONS: dict[str, tuple[str, ...]] = {
    # endpoints and deployments
    "arm:GET onlineEndpoints": (f"{ML}/onlineEndpoints/read",),
    "arm:PUT onlineEndpoints": (f"{ML}/onlineEndpoints/write",),
    "arm:DELETE onlineEndpoints": (f"{ML}/onlineEndpoints/delete",),
    "arm:POST onlineEndpoints/listKeys": (f"{ML}/onlineEndpoints/listKeys/action",),
    "arm:POST onlineEndpoints/token": (f"{ML}/onlineEndpoints/token/action",),
    "arm:GET onlineEndpoints/deployments": (f"{ML}/onlineEndpoints/deployments/read",),
    "arm:PUT onlineEndpoints/deployments": (f"{ML}/onlineEndpoints/deployments/write",),
    "arm:DELETE onlineEndpoints/deployments": (f"{ML}/onlineEndpoints/deployments/delete",),
    # status of long-running operations (Azure-AsyncOperation and Location URLs)
    "arm:GET locations/mfeOperationsStatus": ("Microsoft.MachineLearningServices/locations/mfeOperationsStatus/read",),
    # assets a release registers
    "arm:GET models/versions": (f"{ML}/models/versions/read",),
    "arm:PUT models/versions": (f"{ML}/models/versions/write",),
    "arm:GET codes/versions": (f"{ML}/codes/versions/read",),
    "arm:PUT codes/versions": (f"{ML}/codes/versions/write",),
    "arm:GET environments/versions": (f"{ML}/environments/versions/read",),
    "arm:PUT environments/versions": (f"{ML}/environments/versions/write",),
    # autoscale and metrics (Azure Monitor)
    "arm:PUT autoscalesettings": ("Microsoft.Insights/autoscalesettings/write",),
    "arm:DELETE autoscalesettings": ("Microsoft.Insights/autoscalesettings/delete",),
    "arm:GET metrics": ("Microsoft.Insights/metrics/read",),
    # scoring (data plane; key and AML-token scoring need no role, Microsoft Entra scoring does)
    "score:POST score": (f"{ML}/onlineEndpoints/score/action",),
    # artifacts (Blob; data actions)
    "blob:PUT container": (f"{BLOBS}/write",),
    "blob:HEAD blob": (f"{BLOBS}/blobs/read",),
    "blob:GET blob": (f"{BLOBS}/blobs/read",),
    "blob:PUT block": (f"{BLOBS}/blobs/write",),
    "blob:PUT blocklist": (f"{BLOBS}/blobs/write", f"{BLOBS}/blobs/tags/write"),
    "blob:PUT blob": (f"{BLOBS}/blobs/write", f"{BLOBS}/blobs/tags/write"),
    "blob:DELETE blob": (f"{BLOBS}/blobs/delete",),
    # the shared ledger (deployer_azure.ledger): List Blobs under its prefix
    "blob:GET container": (f"{BLOBS}/blobs/read",),
}

DATA_PREFIXES = ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/",)
DATA_EXTRA = (f"{ML}/onlineEndpoints/score/action",)


def actions() -> set[str]:
    """Every action in the role."""
    return {a for acts in OPERATIONS.values() for a in acts}


def permissions(account: str | None = None, **_: Any) -> dict[str, Any]:
    """A custom role definition (JSON-ready) for the azure provider.

    ``account`` (``--account``) is the subscription id the role is assignable in; without it the scope is a
    placeholder to replace. Blob reads and writes are data actions (assign the role on the storage account
    or the artifact container); everything else is a control-plane action on the workspace's resource group.
    """
    every = sorted(actions())
    data = [a for a in every if a.startswith(DATA_PREFIXES) or a in DATA_EXTRA]
    control = [a for a in every if a not in data]
    scope = f"/subscriptions/{account}" if account else "/subscriptions/SUBSCRIPTION_ID"
    return {
        "Name": "deployer (azure provider)",
        "IsCustom": True,
        "Description": "What deployer's azure provider needs: online endpoints, deployments, model, code and "
        "environment versions, autoscale settings, metrics, and artifact blobs.",
        "Actions": control,
        "NotActions": [],
        "DataActions": data,
        "NotDataActions": [],
        "AssignableScopes": [scope],
    }
