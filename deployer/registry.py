"""Providers by name: known names with install hints, extended by the ``deployer.providers`` entry points.

Built-in and third-party providers take the same path: an entry point names the provider class
(``local = "deployer.local.provider:LocalProvider"``). ``KNOWN`` only adds the hint shown when a
well-known provider is named but its package is not installed. Nothing is imported until a
provider is asked for, so ``import deployer`` and ``deployer --help`` load no cloud SDK.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from deployer.errors import ProviderNotFoundError

GROUP = "deployer.providers"

KNOWN: MappingProxyType[str, dict[str, str]] = MappingProxyType(
    {
        "aws": {"class": "deployer_aws.provider:AwsProvider", "err": "pip install mldeployer-aws"},
        "azure": {"class": "deployer_azure.provider:AzureProvider", "err": "pip install mldeployer-azure"},
        "gcp": {"class": "deployer_gcp.provider:GcpProvider", "err": "pip install mldeployer-gcp"},
        "local": {"class": "deployer.local.provider:LocalProvider", "err": "reinstall mldeployer"},
    }
)


@cache
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def available() -> list[str]:
    """Names of installed providers, sorted."""
    return sorted(_entry_points())


def provider_class(name: str) -> Any:
    """Import and return the provider class registered under ``name``.

    Raises :class:`ProviderNotFoundError` with the package to install.
    """
    target = _entry_points().get(name)
    if target is None:
        known = KNOWN.get(name)
        installed = ", ".join(available()) or "none"
        if known:
            raise ProviderNotFoundError(
                f"provider {name!r} is not installed (installed: {installed})", hint=known["err"]
            )
        raise ProviderNotFoundError(
            f"unknown provider {name!r} (installed: {installed})",
            hint="set target.provider to one of the installed providers, or install the plugin that provides it",
        )
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        hint = KNOWN.get(name, {}).get("err", f"reinstall the package that provides {module}")
        raise ProviderNotFoundError(f"provider {name!r} failed to import: {e}", hint=hint) from e
