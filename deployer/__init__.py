"""deployer: make a trained model a safe, autoscaling endpoint on any cloud or this machine.

    import deployer
    ep = deployer.deploy(model, name="churn")          # local by default
    ep.predict([[0.1, 0.2, 0.3]])
    deployer.apply("configs/quickstart.yaml")
    deployer.rollback("churn")

The verbs are imported lazily so ``import deployer`` stays cheap and loads no cloud SDK.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "apply", "deploy", "plan", "status", "history", "rollback", "scale", "destroy", "Endpoint", "guard", "adopt",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        if name == "guard":
            from deployer.guards import guard

            return guard
        from deployer import api

        return getattr(api, name)
    raise AttributeError(f"module 'deployer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = sorted(_API)
