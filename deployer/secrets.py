"""Secrets kept secret: what is redacted before anything is stored, logged or printed.

Secret-bearing fields are typed :class:`pydantic.SecretStr`: the local endpoint's bearer token
(``LocalOptions.token``, any provider's ``Options`` field typed ``SecretStr``), ``notify_webhook``
and webhook gate URLs. Their values reach only the code that uses them (the HTTP call, the
supervisor's own ``desired.json``, mode 0600); the ledger (endpoint target, release records, journal
detail, gate evidence), events, logs and ``--json`` output get the redacted form:

* an option secret becomes :data:`REDACTED`; reading options back from the ledger drops it
  (:func:`revealed`), so a provider falls back to its environment default or keeps what the running
  endpoint already has (the local provider keeps the endpoint's token);
* a URL keeps its scheme, host and port and loses everything else (:func:`redact_url`): webhook
  URLs carry their credentials in the user part, the path (Slack's ``/services/T/B/secret``) or the
  query.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

REDACTED = "***"
"""What a secret option value is stored as."""


def reveal(value: SecretStr | str | None) -> str | None:
    """The clear value of a secret field (for the one call that needs it)."""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """Names of the fields of ``model`` typed ``SecretStr`` (or ``SecretStr | None``)."""
    out: set[str] = set()
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return frozenset()
    for name, info in model.model_fields.items():
        ann = info.annotation
        if ann is SecretStr or SecretStr in getattr(ann, "__args__", ()):
            out.add(name)
    return frozenset(out)


def redact_options(options: dict[str, Any], model: type[BaseModel] | None) -> dict[str, Any]:
    """``options`` with every value of a secret field of ``model`` replaced by :data:`REDACTED`."""
    secret = secret_fields(model) if model is not None else frozenset()
    return {k: (REDACTED if k in secret and v is not None else v) for k, v in options.items()}


def revealed(options: dict[str, Any]) -> dict[str, Any]:
    """Options read back from the ledger, without the values that were redacted when stored."""
    return {k: v for k, v in options.items() if v != REDACTED}


def redact_url(url: SecretStr | str | None) -> str:
    """``scheme://host[:port]/…``: what a webhook URL may be shown as."""
    raw = reveal(url) or ""
    try:
        parts = urlsplit(raw)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return REDACTED
    rest = "/…" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{rest}" if parts.scheme else REDACTED


def scrub(text: str, *secrets: SecretStr | str | None) -> str:
    """``text`` (an error message) with every clear ``secrets`` value replaced by its redacted form."""
    for s in secrets:
        clear = reveal(s)
        if clear:
            text = text.replace(clear, redact_url(clear) if "://" in clear else REDACTED)
    return text


def private_file(path: Path) -> None:
    """Create ``path`` (and the deployer home when it is the home's ledger) readable by its owner
    only: the file 0600, the home 0700. An existing one that others can read is tightened, with a
    warning in the log. Other parent directories (a ``--state`` path) are created, never changed."""
    from deployer.paths import home

    parent = path.parent
    if parent.resolve() == home().resolve():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _tighten(parent, 0o700)
    else:
        parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        _tighten(p, 0o600)


def _tighten(path: Path, mode: int) -> None:
    try:
        st = path.stat()
    except OSError:
        return
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, mode)
        logging.getLogger("deployer").warning(
            "%s was readable by others (mode %o); now %o", path, st.st_mode & 0o777, mode
        )
