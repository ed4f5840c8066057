"""The deployer error tree.

Every error the library raises on purpose is a :class:`DeployerError`. Each carries a one-line
message that says what is wrong and how to fix it, and an ``exit_code`` the CLI returns::

    DeployerError                       exit 1
    ├── SpecError                       exit 2   bad input: names the field path and the fix
    ├── ProviderNotFoundError           exit 2   unknown provider; says which package to install
    ├── CapabilityError                 exit 2   the provider cannot do what the spec asks (with reason)
    ├── ProviderError                   exit 3   the cloud said no
    │   ├── AuthError                            credentials missing or refused
    │   ├── QuotaError                           a limit was hit
    │   ├── NotFoundError                        the named thing does not exist
    │   ├── ConflictError                        it exists already / is busy
    │   └── TransientError                       throttling, 5xx, timeouts: retried by the core
    ├── StorageError                    exit 3   artifact store failures
    │   └── DigestMismatchError                  stored bytes do not hash to their digest
    ├── GateFailedError                 exit 4   a health gate failed; the rollout was rolled back
    ├── WaitTimeoutError                exit 5   an operation did not finish in time (carries it)
    ├── LockedError                     exit 6   another process holds the endpoint lock
    └── LedgerError                     exit 7   the ledger cannot answer
        └── NoPreviousReleaseError               nothing to roll back to

Provider packages translate their SDK's exceptions into this tree in one place, by error code,
and raise ``from`` the original.
"""

from __future__ import annotations

from typing import Any


class DeployerError(Exception):
    """Base of every error deployer raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": self.message, "hint": self.hint}


class SpecError(DeployerError):
    """The spec is invalid. ``field`` is the dotted path of the offending field.

    ``problems`` lists every problem found (each a SpecError; the first is this one's field, message and
    fix): a spec with several problems names all of them, in one line (``N problems: a: ...; b: ...``)
    and in ``to_dict()["problems"]``.
    """

    exit_code = 2

    def __init__(
        self, field: str, message: str, *, fix: str | None = None, problems: list[SpecError] | None = None
    ) -> None:
        self.field = field
        self.fix = fix
        text = f"{field}: {message}" if field else message
        self.problems: list[SpecError] = problems or [self]
        if len(self.problems) > 1:
            super().__init__(f"{len(self.problems)} problems: " + "; ".join(str(p) for p in self.problems))
        else:
            super().__init__(text, hint=fix)

    def under(self, prefix: str) -> SpecError:
        """The same problems with ``prefix.`` before each field (for a section validated on its own)."""
        moved = [
            SpecError(f"{prefix}.{p.field}" if p.field else prefix, p.message.removeprefix(f"{p.field}: "), fix=p.fix)
            for p in self.problems
        ]
        first = moved[0]
        return SpecError(first.field, first.message.removeprefix(f"{first.field}: "), fix=first.fix, problems=moved)

    def to_dict(self) -> dict[str, Any]:
        listed = [{"field": p.field, "message": p.message, "hint": p.hint} for p in self.problems]
        return {**super().to_dict(), "field": self.field, "problems": listed}


class ProviderNotFoundError(DeployerError):
    """No provider is registered under the requested name."""

    exit_code = 2


class CapabilityError(DeployerError):
    """The provider cannot do what was asked; the message carries the provider's reason."""

    exit_code = 2


class ProviderError(DeployerError):
    """The provider's platform refused or failed a call."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class AuthError(ProviderError):
    """Credentials are missing, expired or lack a permission."""


class QuotaError(ProviderError):
    """A service quota or limit was reached."""


class NotFoundError(ProviderError):
    """The named resource does not exist."""


class ConflictError(ProviderError):
    """The resource exists already or is in a state that forbids the call."""


class TransientError(ProviderError):
    """Throttling, 5xx or a timeout: safe to retry with backoff inside the deadline."""


class StorageError(DeployerError):
    """The artifact store failed."""

    exit_code = 3


class DigestMismatchError(StorageError):
    """Stored bytes do not hash to the digest they are filed under."""


class GateFailedError(DeployerError):
    """A health gate failed; ``evidence`` holds the gate decisions that led to it."""

    exit_code = 4

    def __init__(self, message: str, *, evidence: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence or []


class WaitTimeoutError(DeployerError):
    """An operation did not reach a terminal state before its deadline."""

    exit_code = 5

    def __init__(self, message: str, *, operation: Any = None) -> None:
        super().__init__(message, hint="raise the timeout (--timeout) or check the provider's console")
        self.operation = operation


class LockedError(DeployerError):
    """Another process holds the endpoint lock; ``holder`` names it."""

    exit_code = 6

    def __init__(self, endpoint: str, holder: str) -> None:
        super().__init__(
            f"endpoint {endpoint!r} is locked by {holder}",
            hint="wait for that operation to finish; a lock held by a dead process is taken over",
        )
        self.endpoint = endpoint
        self.holder = holder


class LedgerError(DeployerError):
    """The ledger cannot answer or is inconsistent."""

    exit_code = 7


class NoPreviousReleaseError(LedgerError):
    """There is no earlier good release to roll back to."""
