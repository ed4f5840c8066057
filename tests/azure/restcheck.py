"""Strict parsing of request bodies with the SDK's own generated REST models.

The generated models accept anything (unknown keys are kept, missing required ones are not noticed), so
the fakes walk the body against the model's declared fields: an unknown field, a missing required field,
a wrong JSON type or an unknown polymorphic discriminator is refused with the path, as Azure Resource
Manager refuses it (400 ``InvalidRequestContent``). Works for the typespec models of
``azure.ai.ml._restclient.arm_ml_service`` (``rest_field``) and the msrest models of
``azure.mgmt.monitor`` (``_attribute_map`` / ``_validation``).
"""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Any


class BodyError(ValueError):
    """A request body the service would refuse."""


def check(cls: type, data: Any, path: str = "$") -> Any:
    """Validate ``data`` against ``cls``; return ``cls`` deserialised from it."""
    if hasattr(cls, "_attribute_map"):
        _check_msrest(cls, data, path)
        return cls.from_dict(data)  # type: ignore[attr-defined]
    _check_typespec(cls, data, path)
    return cls(data)


# -- typespec models (model_base.Model) ----------------------------------------------------------
def _fields(cls: type) -> dict[str, tuple[str, Any]]:
    """rest name -> (attribute name, annotation) for every declared field of ``cls``."""
    if not getattr(cls, "_calculated", None) or cls.__name__ not in cls._calculated:  # type: ignore[attr-defined]
        cls({})  # the model computes its field table on first construction
    module = sys.modules[cls.__module__]
    package = sys.modules[cls.__module__.rsplit(".", 1)[0]]  # "_models" in the annotations is the package
    hints = typing.get_type_hints(cls, globalns={**vars(module), "_models": package})
    return {rf._rest_name: (attr, hints.get(attr)) for attr, rf in cls._attr_to_rest_field.items()}  # type: ignore[attr-defined]


def _required(cls: type) -> set[str]:
    """Attributes without a default in the keyword ``__init__`` overload (the generator's 'Required')."""
    overloads = typing.get_overloads(cls.__init__)  # type: ignore[misc]
    if not overloads:
        return set()
    params = inspect.signature(overloads[0]).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty}


def _resolve(cls: type, data: dict[str, Any], path: str) -> type:
    mapping = getattr(cls, "__mapping__", None)
    if not mapping:
        return cls
    cls({})
    disc = next((rf for rf in cls._attr_to_rest_field.values() if rf._is_discriminator), None)  # type: ignore[attr-defined]
    if disc is None:
        return cls
    value = data.get(disc._rest_name)
    if value not in mapping:
        raise BodyError(f"{path}.{disc._rest_name}: {value!r} is not one of {sorted(mapping)}")
    return typing.cast(type, mapping[value])


def _check_typespec(cls: type, data: Any, path: str) -> None:
    if not isinstance(data, dict):
        raise BodyError(f"{path}: expected an object for {cls.__name__}, got {type(data).__name__}")
    cls = _resolve(cls, data, path)
    fields = _fields(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BodyError(f"{path}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    required = _required(cls)
    for rest, (attr, hint) in fields.items():
        if attr in required and data.get(rest) is None:
            raise BodyError(f"{path}.{rest}: required by {cls.__name__}")
        if rest in data and data[rest] is not None:
            _check_value(hint, data[rest], f"{path}.{rest}")


def _check_value(hint: Any, value: Any, path: str) -> None:
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin is typing.Union and len(args) == 1:
        _check_value(args[0], value, path)
        return
    if origin is typing.Union:
        models = [a for a in args if isinstance(a, type) and hasattr(a, "_attr_to_rest_field") or _is_model(a)]
        if models and isinstance(value, dict):
            _check_typespec(models[0], value, path)
        elif any(a is str for a in args) and not isinstance(value, str):
            raise BodyError(f"{path}: expected a string")
        return
    if origin is list:
        if not isinstance(value, list):
            raise BodyError(f"{path}: expected an array")
        for i, v in enumerate(value):
            _check_value(args[0] if args else Any, v, f"{path}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise BodyError(f"{path}: expected an object")
        for k, v in value.items():
            _check_value(args[1] if len(args) > 1 else Any, v, f"{path}.{k}")
        return
    if _is_model(hint):
        _check_typespec(hint, value, path)
    elif hint is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise BodyError(f"{path}: expected an integer, got {value!r}")
    elif hint is str and not isinstance(value, str):
        raise BodyError(f"{path}: expected a string, got {value!r}")
    elif hint is bool and not isinstance(value, bool):
        raise BodyError(f"{path}: expected a boolean, got {value!r}")


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and getattr(t, "_is_model", False)


# -- msrest models (azure.mgmt.*) --------------------------------------------------------------
def _check_msrest(cls: type, data: Any, path: str) -> None:
    if not isinstance(data, dict):
        raise BodyError(f"{path}: expected an object for {cls.__name__}")
    attrs: dict[str, dict[str, Any]] = cls._attribute_map  # type: ignore[attr-defined]
    flat = [spec["key"].split(".") for spec in attrs.values()]  # msrest flattens "properties.x"
    nested = {k[0] for k in flat if len(k) > 1}
    unknown = sorted(set(data) - {k[0] for k in flat})
    for outer in nested:
        inner = data.get(outer)
        if isinstance(inner, dict):
            allowed = {k[1] for k in flat if len(k) > 1 and k[0] == outer}
            unknown += sorted(f"{outer}.{k}" for k in set(inner) - allowed)
    if unknown:
        raise BodyError(f"{path}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    validation: dict[str, dict[str, Any]] = getattr(cls, "_validation", {})
    models = sys.modules[cls.__module__]
    for name, spec in attrs.items():
        keys = spec["key"].split(".")
        value: Any = data
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        rule = validation.get(name, {})
        if rule.get("required") and not rule.get("readonly") and value is None:
            raise BodyError(f"{path}.{spec['key']}: required by {cls.__name__}")
        typ = spec["type"]
        if value is None:
            continue
        inner = typ.strip("[]")
        sub = getattr(models, inner, None)
        if isinstance(sub, type) and hasattr(sub, "_attribute_map"):
            items = value if typ.startswith("[") else [value]
            if typ.startswith("[") and not isinstance(value, list):
                raise BodyError(f"{path}.{spec['key']}: expected an array")
            for i, item in enumerate(items):
                _check_msrest(
                    sub, item, f"{path}.{spec['key']}[{i}]" if typ.startswith("[") else f"{path}.{spec['key']}"
                )
