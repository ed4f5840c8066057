"""Callable gates for the conformance kit (``deployer.testing.gatefns:always_pass``)."""

from __future__ import annotations

from typing import Any


def always_pass(ctx: Any) -> bool:
    return True


def always_fail(ctx: Any) -> bool:
    return False


def fail_from_half(ctx: Any) -> bool:
    """Passes while the candidate carries less than half the traffic; fails from 50% on."""
    return (ctx.weight or 0) < 50
