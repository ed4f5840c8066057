"""Loading specs from YAML: ``${VAR}`` / ``${VAR:-default}`` interpolation and environment overlays.

A spec file may carry named overlays under ``environments``; ``--env prod`` deep-merges
``environments.prod`` over the base before validation::

    name: churn
    model: {path: model.joblib}
    environments:
      prod:
        target: {provider: aws, region: eu-west-1}
        resources: {replicas: 3}

Relative ``model.path`` values are resolved against the spec file's directory. Every problem is
raised as :class:`~deployer.errors.SpecError` naming the field and the fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from deployer.errors import SpecError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_FIXES = {
    "extra_forbidden": "remove it or check its spelling against the spec reference (docs/spec.md)",
    "missing": "add this field",
    "int_parsing": "use a whole number",
    "int_type": "use a whole number",
    "float_parsing": "use a number",
    "bool_parsing": "use true or false",
    "string_type": "use a string",
    "dict_type": "use a mapping (key: value)",
    "model_type": "use a mapping (key: value)",
    "list_type": "use a list",
    "union_tag_invalid": "set type to one of the allowed gate types",
    "union_tag_not_found": "add a 'type' field",
}


def interpolate(value: Any, env: dict[str, str], path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of ``value``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise SpecError(
                path,
                f"environment variable ${{{name}}} is not set",
                fix=f"export {name}=... or write ${{{name}:-default}}",
            )

        return _VAR.sub(sub, value)
    return value


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.exists():
        raise SpecError("", f"spec file {path} does not exist", fix="check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise SpecError("", f"{path}: {problem}{where}", fix="fix the YAML syntax") from None
    if data is None:
        raise SpecError("", f"{path} is empty", fix="write a spec: at least name and model")
    if not isinstance(data, dict):
        raise SpecError(
            "", f"{path} must hold a mapping at the top, found a {type(data).__name__}", fix="start with 'name: ...'"
        )
    return data


def resolve(
    data: dict[str, Any],
    *,
    env_name: str | None = None,
    environ: dict[str, str] | None = None,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Apply the overlay, interpolate variables and resolve relative paths; return plain data."""
    data = dict(data)
    overlays = data.pop("environments", None) or {}
    if not isinstance(overlays, dict):
        raise SpecError(
            "environments", "must be a mapping of name -> overrides", fix="write environments: {prod: {...}}"
        )
    if env_name:
        if env_name not in overlays:
            known = ", ".join(sorted(overlays)) or "none"
            raise SpecError(
                "environments", f"no environment {env_name!r} (defined: {known})", fix="add it or pick a defined one"
            )
        data = deep_merge(data, overlays[env_name])
    data = interpolate(data, dict(os.environ) if environ is None else environ)
    model = data.get("model")
    if base_dir is not None and isinstance(model, dict) and isinstance(model.get("path"), str):
        p = Path(model["path"]).expanduser()
        if not p.is_absolute():
            model = {**model, "path": str((base_dir / p).resolve())}
            data["model"] = model
    return data


def validate(data: dict[str, Any], *, check_paths: bool = True) -> Any:
    """Validate plain data into a :class:`~deployer.spec.Spec`, translating pydantic errors."""
    from pydantic import ValidationError

    from deployer.spec import Spec

    model = data.get("model")
    if isinstance(model, dict) and "obj" in model:
        raise SpecError(
            "model.obj",
            "is for model objects passed to deployer.deploy() in Python",
            fix="in a spec file, set model.path to the saved model",
        )
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise spec_error(e) from None
    if check_paths and spec.model.path is not None and not Path(spec.model.path).exists():
        raise SpecError(
            "model.path", f"{spec.model.path} does not exist", fix="point model.path at the model file or directory"
        )
    return spec


def spec_error(e: Any) -> SpecError:
    """The first pydantic error as a one-line SpecError with the field path and a fix."""
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    fix = _FIXES.get(err["type"])
    extra = len(e.errors()) - 1
    if extra:
        msg += f" (+{extra} more problem{'s' if extra > 1 else ''})"
    return SpecError(loc, msg, fix=fix)


def load_spec(
    path: str | Path,
    env: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Any:
    """Read, overlay, interpolate and validate a spec file. Raises SpecError."""
    path = Path(path)
    data = read_yaml(path)
    data = resolve(data, env_name=env, environ=environ, base_dir=path.parent.resolve())
    if overrides:
        data = deep_merge(data, overrides)
    return validate(data)
