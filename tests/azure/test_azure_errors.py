"""azure-core exceptions map to the deployer tree by status and error code, never by message text."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.transport import HttpResponse
from azure.core.rest import HttpRequest
from deployer_azure.errors import translate

from deployer.errors import AuthError, ConflictError, NotFoundError, ProviderError, QuotaError, TransientError


class _Response(HttpResponse):  # type: ignore[misc]
    def __init__(self, status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
        super().__init__(HttpRequest("GET", "https://management.azure.com/x"), None)
        self.status_code = status
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self._body = json.dumps(body).encode()
        self.reason = "x"

    def body(self) -> bytes:
        return self._body

    def text(self, encoding: str | None = None) -> str:
        return self._body.decode()


def arm_error(status: int, code: str, cls: type = HttpResponseError) -> HttpResponseError:
    err: HttpResponseError = cls(response=_Response(status, {"error": {"code": code, "message": "the same text"}}))
    return err


@pytest.mark.parametrize(
    "exc, expected",
    [
        (arm_error(429, "TooManyRequests"), TransientError),
        (arm_error(503, "ServiceUnavailable"), TransientError),
        (arm_error(500, "InternalServerError"), TransientError),
        (arm_error(403, "AuthorizationFailed"), AuthError),
        (arm_error(401, "InvalidAuthenticationToken", ClientAuthenticationError), AuthError),
        (arm_error(400, "QuotaExceeded"), QuotaError),
        (arm_error(404, "ResourceNotFound", ResourceNotFoundError), NotFoundError),
        (arm_error(409, "Conflict", ResourceExistsError), ConflictError),
        (arm_error(400, "BadArgument"), ProviderError),
        (ServiceRequestError("connection refused"), TransientError),
    ],
)
def test_translate_by_status_and_code(exc: Exception, expected: type) -> None:
    err = translate(exc, "Op")
    assert type(err) is expected, (err, err.code)
    assert "the same text" in str(err) or isinstance(exc, ServiceRequestError)


def test_blob_error_code_comes_from_the_header() -> None:
    exc = HttpResponseError(response=_Response(409, {}, {"x-ms-error-code": "BlobAlreadyExists"}))
    err = translate(exc, "PutBlob")
    assert isinstance(err, ConflictError) and err.code == "BlobAlreadyExists"
