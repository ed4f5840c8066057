"""azure-core exceptions -> the deployer error tree, in one place, by HTTP status and error code.

Most specific first; message text is never parsed. Azure Resource Manager answers errors as
``{"error": {"code": ..., "message": ...}}`` (https://learn.microsoft.com/azure/azure-resource-manager/management/common-deployment-errors),
which azure-core exposes as ``HttpResponseError.error.code``; Blob storage sends ``x-ms-error-code``
(https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes), exposed as ``error_code``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from deployer.errors import AuthError, ConflictError, NotFoundError, ProviderError, QuotaError, TransientError
from deployer_azure import _sdk

TRANSIENT_CODES = frozenset(
    {
        "TooManyRequests",
        "ServerBusy",
        "ServiceUnavailable",
        "InternalServerError",
        "InternalError",
        "OperationTimedOut",
        "GatewayTimeout",
        "RetryableError",
        "ResourceGroupBeingDeleted",
    }
)
AUTH_CODES = frozenset(
    {
        "AuthorizationFailed",
        "AuthenticationFailed",
        "InvalidAuthenticationToken",
        "InvalidAuthenticationTokenTenant",
        "ExpiredAuthenticationToken",
        "LinkedAuthorizationFailed",
        "AuthorizationPermissionMismatch",
        "InsufficientAccountPermissions",
        "Forbidden",
    }
)
QUOTA_CODES = frozenset(
    {
        "QuotaExceeded",
        "OperationNotAllowed",
        "SkuNotAvailable",
        "InsufficientQuota",
        "ResourceQuotaExceeded",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "ResourceNotFound",
        "NotFound",
        "UserError.NotFound",
        "ResourceGroupNotFound",
        "BlobNotFound",
        "ContainerNotFound",
        "WorkspaceNotFound",
    }
)
CONFLICT_CODES = frozenset(
    {
        "Conflict",
        "ConflictError",
        "OperationInProgress",
        "AnotherOperationInProgress",
        "BlobAlreadyExists",
        "ConditionNotMet",
        "LeaseIdMissing",
        "LeaseAlreadyPresent",
    }
)


def error_code(exc: BaseException) -> str:
    """The service's error code of an azure-core exception ("" when it has none)."""
    if isinstance(exc, _sdk.HttpResponseError):
        err = getattr(exc, "error", None)
        code = getattr(err, "code", None) or getattr(exc, "error_code", None)
        if code:
            return str(getattr(code, "value", code))  # Blob's StorageErrorCode is an enum: its value is the code
        resp = getattr(exc, "response", None)
        if resp is not None:
            return str(resp.headers.get("x-ms-error-code", "") or "")
    return ""


def status_of(exc: BaseException) -> int:
    return int(getattr(exc, "status_code", None) or 0)


def translate(exc: BaseException, operation: str = "") -> ProviderError:
    """Map one azure-core exception to the deployer tree (the caller raises it ``from exc``)."""
    code = error_code(exc)
    status = status_of(exc)
    msg = getattr(exc, "message", None) or str(exc)
    text = f"{operation}: {code or status or type(exc).__name__}: {msg}" if operation else str(msg)
    if isinstance(exc, _sdk.ClientAuthenticationError) or code in AUTH_CODES or status in (401, 403):
        return AuthError(
            text,
            code=code or str(status or "Auth"),
            hint="check the Azure credential and the role from `deployer iam-policy azure`",
        )
    if isinstance(exc, _sdk.ServiceRequestError | _sdk.ServiceResponseError):
        return TransientError(text, code=type(exc).__name__)
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        return TransientError(text, code=code or str(status))
    if code in QUOTA_CODES:
        return QuotaError(text, code=code, hint="request a quota increase for the VM family in the region")
    if isinstance(exc, _sdk.ResourceNotFoundError) or code in NOT_FOUND_CODES or status == 404:
        return NotFoundError(text, code=code or "404")
    if (
        isinstance(exc, _sdk.ResourceExistsError | _sdk.ResourceModifiedError)
        or code in CONFLICT_CODES
        or status in (409, 412)
    ):
        return ConflictError(text, code=code or str(status))
    return ProviderError(text, code=code or str(status or type(exc).__name__))


@contextmanager
def azure_errors(operation: str = "") -> Iterator[None]:
    """Translate every azure-core exception raised in the block (``raise ... from`` the original)."""
    try:
        yield
    except (_sdk.HttpResponseError, _sdk.ServiceRequestError, _sdk.ServiceResponseError) as exc:
        raise translate(exc, operation) from exc


__all__ = ["azure_errors", "error_code", "translate"]
