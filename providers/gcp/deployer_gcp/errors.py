"""Google exceptions -> the deployer error tree, in one place, by status code.

``google.api_core`` raises one class per HTTP / gRPC status (NotFound, AlreadyExists, TooManyRequests,
...); the class (its ``code``) decides, never the message text. Most specific first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from deployer.errors import AuthError, ConflictError, NotFoundError, ProviderError, TransientError
from deployer_gcp import _sdk

AUTH_HINT = "check Application Default Credentials (gcloud auth application-default login) and the roles from " \
    "`deployer iam-policy gcp`"


def translate(exc: BaseException, operation: str | None = None) -> ProviderError:
    """Map one Google exception to the deployer tree (the caller raises it ``from exc``)."""
    op = f"{operation}: " if operation else ""
    if isinstance(exc, _sdk.RetryError):
        cause = exc.cause if isinstance(exc.cause, BaseException) else None
        inner = translate(cause, operation) if cause is not None else None
        return inner or TransientError(f"{op}{exc}", code="RetryError")
    if isinstance(exc, _sdk.GoogleAPICallError):
        status = int(exc.code or 0) if isinstance(exc.code, int) else 0
        reason = type(exc).__name__
        text = f"{op}{status} {reason}: {exc.message}"
        if isinstance(exc, _sdk.TRANSIENT_TYPES) or status >= 500:  # 429 includes RESOURCE_EXHAUSTED
            return TransientError(text, code=reason)
        if status == 404:
            return NotFoundError(text, code=reason)
        if status in (401, 403):
            return AuthError(text, code=reason, hint=AUTH_HINT)
        if status in (409, 412) or reason in ("AlreadyExists", "Aborted", "FailedPrecondition", "Conflict"):
            return ConflictError(text, code=reason)
        return ProviderError(text, code=reason)
    if isinstance(exc, _sdk.DefaultCredentialsError):
        return AuthError(f"{op}{exc}", code="NoCredentials", hint=AUTH_HINT)
    if isinstance(exc, _sdk.TransportError | ConnectionError | TimeoutError):
        return TransientError(f"{op}{exc}", code=type(exc).__name__)
    try:
        import requests

        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            return TransientError(f"{op}{exc}", code=type(exc).__name__)
    except ImportError:  # pragma: no cover
        pass
    return ProviderError(f"{op}{exc}", code=type(exc).__name__)


@contextmanager
def gcp_errors(operation: str | None = None) -> Iterator[None]:
    """Translate every Google exception raised in the block (``raise ... from`` the original)."""
    try:
        yield
    except ProviderError:
        raise
    except (_sdk.GoogleAPIError, _sdk.DefaultCredentialsError, _sdk.TransportError, ConnectionError) as exc:
        raise translate(exc, operation) from exc


__all__ = ["gcp_errors", "translate"]
