"""botocore exceptions -> the deployer error tree, in one place, by error code.

Most specific first, by code. SageMaker answers a missing resource with the generic
``ValidationException`` (its Describe*/Delete* API pages list no ResourceNotFound error, only the
common errors: https://docs.aws.amazon.com/sagemaker/latest/APIReference/CommonErrors.html), so
"not found" is decided by the code *and* the operation: only a ``Describe*`` / ``Delete*`` call,
whose only input is a name, turns it into :class:`NotFoundError`; on a Create/Update call it is a
client-side error. The one message read is SageMaker's "Cannot update in-progress endpoint" on an
update call: :class:`EndpointBusyError`, a conflict the core waits out (it is also transient).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from deployer.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    ProviderError,
    QuotaError,
    TransientError,
)
from deployer_aws import _sdk

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "SlowDown",
        "ProvisionedThroughputExceededException",
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "InternalServiceException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "EC2ThrottledException",
        "TransactionInProgressException",
        "ConcurrentUpdateException",
    }
)
AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "AuthFailure",
        "UnauthorizedOperation",
        "AllAccessDisabled",
        "InvalidToken",
        "RequestExpired",
        "NotAuthorized",
        "AccountProblem",
    }
)
QUOTA_CODES = frozenset(
    {
        "ResourceLimitExceeded",
        "LimitExceededException",
        "ServiceQuotaExceededException",
        "TooManyBuckets",
        "QuotaExceeded",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "NoSuchBucket",
        "NoSuchKey",
        "NotFound",
        "404",
        "ResourceNotFound",
        "ResourceNotFoundException",
        "ObjectNotFoundException",
        "NoSuchEntity",
        "NoSuchUpload",
        "ModelNotReadyException",
    }
)
CONFLICT_CODES = frozenset(
    {
        "ConflictException",
        "ResourceInUse",
        "ResourceInUseException",
        "BucketAlreadyExists",
        "BucketAlreadyOwnedByYou",
        "OperationAborted",
        "PreconditionFailed",
        "412",
        "ConditionalCheckFailedException",
        "FailedResourceAccessException",
    }
)
# SageMaker reports a missing resource as ValidationException; only these operations (Describe and
# Delete, keyed by one name) turn it into NotFoundError. Create/Update/Invoke keep it a client error.
NOT_FOUND_VALIDATION_OPS = frozenset(
    {
        "DescribeEndpoint",
        "DescribeEndpointConfig",
        "DescribeModel",
        "DeleteEndpoint",
        "DeleteEndpointConfig",
        "DeleteModel",
    }
)
BUSY_OPS = frozenset({"UpdateEndpoint", "UpdateEndpointWeightsAndCapacities", "DeleteEndpoint"})
BUSY_MESSAGE = "Cannot update in-progress endpoint"


class NotImplementedByEndpointError(ProviderError):
    """The endpoint answered with a web page, not an AWS response: a mock (``AWS_ENDPOINT_URL``) that
    lacks the API, as a plain moto server lacks UpdateEndpoint. Not transient: asking again cannot help."""


def _not_an_aws_answer(op: str, status: int) -> ProviderError:
    override = _sdk.endpoint_override_any()
    if override is None and status >= 500:  # a proxy in front of AWS failing: asking again may help
        return TransientError(f"{op}: HTTP {status} with a web page instead of an AWS response", code=str(status))
    where = f"the endpoint at {override}" if override else "the endpoint"
    return NotImplementedByEndpointError(
        f"{op}: {where} answered HTTP {status} with a web page instead of an AWS response: "
        "this mock does not implement it",
        code="NotImplemented",
        hint="try the provider offline with `python -m deployer_aws.testing` (moto with the SageMaker APIs "
        "deployer needs; see docs/providers/aws.md), or unset AWS_ENDPOINT_URL to use AWS",
    )


class EndpointBusyError(ConflictError, TransientError):
    """The endpoint is Creating/Updating: SageMaker takes one change at a time. A conflict that
    passes (SageMaker finishes within minutes), so the core's retry waits it out inside its deadline."""


def translate(exc: BaseException, operation: str | None = None) -> ProviderError:
    """Map one botocore exception to the deployer tree (the caller raises it ``from exc``)."""
    if isinstance(exc, _sdk.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        msg = str(err.get("Message", "")) or str(exc)
        op = operation or getattr(exc, "operation_name", None) or ""
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode", 0) or 0)
        if _sdk.web_page(exc.response):
            return _not_an_aws_answer(op or "the call", status)
        text = f"{op}: {code}: {msg}" if op else f"{code}: {msg}"
        if code in TRANSIENT_CODES:
            return TransientError(text, code=code)
        if code in AUTH_CODES:
            return AuthError(
                text,
                code=code,
                hint="check the AWS credentials and the IAM policy from `deployer iam-policy aws`",
            )
        if code in QUOTA_CODES:
            return QuotaError(text, code=code, hint="request a quota increase in the Service Quotas console")
        if code in NOT_FOUND_CODES:
            return NotFoundError(text, code=code)
        if code == "ValidationException" and op in BUSY_OPS and BUSY_MESSAGE in msg:
            return EndpointBusyError(text, code=code, hint="wait for the endpoint to be InService")
        if code == "ValidationException" and op in NOT_FOUND_VALIDATION_OPS:
            return NotFoundError(text, code=code)
        if code in CONFLICT_CODES:
            return ConflictError(text, code=code)
        if status >= 500 or code.isdigit() and int(code) >= 500:
            return TransientError(text, code=code)
        if status in (401, 403):
            return AuthError(text, code=code)
        if status == 429:
            return TransientError(text, code=code)
        return ProviderError(text, code=code)
    if isinstance(exc, _sdk.NoCredentialsError | _sdk.PartialCredentialsError):
        return AuthError(
            str(exc),
            code="NoCredentials",
            hint="configure credentials: AWS_PROFILE, `aws configure` or an instance role",
        )
    if isinstance(exc, _sdk.NoRegionError):
        return ProviderError(str(exc), code="NoRegion", hint="set target.region in the spec")
    if isinstance(
        exc,
        _sdk.EndpointConnectionError | _sdk.ConnectTimeoutError | _sdk.ReadTimeoutError | _sdk.ConnectionClosedError,
    ):
        return TransientError(f"{operation}: {exc}" if operation else str(exc), code=type(exc).__name__)
    if isinstance(exc, _sdk.ParamValidationError):
        return ProviderError(str(exc), code="ParamValidation")
    return ProviderError(str(exc), code=type(exc).__name__)


@contextmanager
def aws_errors(operation: str | None = None) -> Iterator[None]:
    """Translate every botocore exception raised in the block (``raise ... from`` the original)."""
    try:
        yield
    except (_sdk.ClientError, _sdk.BotoCoreError) as exc:
        raise translate(exc, operation) from exc


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ClientError (None for anything else)."""
    if isinstance(exc, _sdk.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return None


__all__ = ["EndpointBusyError", "NotImplementedByEndpointError", "aws_errors", "error_code", "translate"]
