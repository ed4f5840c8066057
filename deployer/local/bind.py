"""The one rule of a local endpoint's address: anything but loopback needs a bearer token.

Checked by ``LocalProvider.validate``, again on every write of ``desired.json`` (deploy, route,
scale: a token can only be kept, never dropped, there), and by ``deployer serve``.
"""

from __future__ import annotations

import ipaddress

from deployer.errors import SpecError

TOKEN_ENV = "DEPLOYER_LOCAL_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_token(host: str, token: str | None, field: str = "provider_options.token") -> None:
    """Raise :class:`SpecError` when ``host`` is not loopback and there is no ``token``."""
    if not is_loopback(host) and not token:
        raise SpecError(
            field,
            f"listening on {host} (not loopback) needs a bearer token",
            fix=f"set provider_options.token or ${TOKEN_ENV}, or use host 127.0.0.1",
        )
