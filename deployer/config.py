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


MAX_SPEC_BYTES = 256 << 10
"""Spec files are small; a larger file is refused before it is parsed (bounded time and memory)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists a spec may have."""
MAX_NODES = 100_000
"""Most values a spec may hold once its aliases are expanded (alias-expansion bombs are refused)."""


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a spec file into plain data, refusing files that could hurt.

    Refused with a one-line :class:`SpecError`: a missing file, a file over :data:`MAX_SPEC_BYTES`,
    bytes that are not UTF-8 text, YAML syntax errors, tags that would construct objects, values
    that are not plain JSON-like data (timestamps, binary, sets, non-string keys), nesting deeper
    than :data:`MAX_DEPTH`, and aliases that expand past :data:`MAX_NODES` values. Time and memory
    are bounded by the size cap: aliases are counted on the composed node graph, never expanded.
    """
    if not path.exists():
        raise SpecError("", f"spec file {path} does not exist", fix="check the path")
    if not path.is_file():
        raise SpecError("", f"{path} is not a file", fix="pass the path of a YAML spec file")
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise SpecError(
            "", f"{path} is {size:,} bytes; spec files are at most {MAX_SPEC_BYTES:,}", fix="pass the spec, not a model"
        )
    raw = path.read_bytes()[: MAX_SPEC_BYTES + 1]
    text = _decode(path, raw)
    data = _parse(path, text)
    if data is None:
        raise SpecError("", f"{path} is empty", fix="write a spec: at least name and model")
    if not isinstance(data, dict):
        raise SpecError(
            "", f"{path} must hold a mapping at the top, found a {type(data).__name__}", fix="start with 'name: ...'"
        )
    return data


def _decode(path: Path, raw: bytes) -> str:
    if b"\x00" in raw:
        raise SpecError("", f"{path} is a binary file, not YAML text", fix="pass the spec file, not a model or archive")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(
            "", f"{path} is not UTF-8 text (byte {e.start} is 0x{raw[e.start]:02x})", fix="save the file as UTF-8"
        ) from None


def _flow_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting outside quotes and comments: a linear pre-check, so a file of
    100,000 brackets is refused at once instead of after the YAML parser recursed through it."""
    depth = deepest = 0
    quote = ""
    prev = "\n"
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#" and prev in " \t\n":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
        prev = c
        i += 1
    return deepest


def _parse(path: Path, text: str) -> Any:
    import yaml

    if _flow_depth(text) > MAX_DEPTH:
        raise SpecError("", f"{path} is nested more than {MAX_DEPTH} levels deep", fix="flatten the spec")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise SpecError("", f"{path} is nested more than {MAX_DEPTH} levels deep", fix="flatten the spec") from None
    except yaml.YAMLError as e:
        raise SpecError("", f"{path}: {_yaml_problem(e)}", fix="fix the YAML syntax") from None
    if node is None:
        return None
    _check_shape(path, node)
    try:
        data = yaml.SafeLoader(text).construct_document(node)
    except yaml.YAMLError as e:
        tag = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" at line {tag + 1}" if tag is not None else ""
        raise SpecError("", f"{path}: {getattr(e, 'problem', None) or e}{where}", fix="use plain YAML values") from None
    _check_values(path, data, "")
    return data


def _yaml_problem(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{getattr(e, 'problem', None) or 'invalid YAML'}{where}"


_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "str", "int", "float", "bool", "null", "merge", "value")
)

_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _check_shape(path: Path, root: Any) -> None:
    """Refuse object-constructing tags, deep nesting and alias bombs on the node graph (linear time)."""
    import yaml

    expanded: dict[int, int] = {}
    on_path: set[int] = set()

    def visit(node: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise SpecError("", f"{path} is nested more than {MAX_DEPTH} levels deep", fix="flatten the spec")
        if isinstance(node, yaml.ScalarNode) and node.tag == _TIMESTAMP:
            node.tag = "tag:yaml.org,2002:str"  # an unquoted date stays the text it is
        if node.tag not in _PLAIN_TAGS:
            line = node.start_mark.line + 1
            raise SpecError(
                "", f"{path}: the tag {node.tag!r} at line {line} is not allowed", fix="use plain YAML values"
            )
        key = id(node)
        if key in expanded:
            return expanded[key]
        if key in on_path:
            raise SpecError("", f"{path}: an alias refers to its own anchor", fix="remove the recursive alias")
        on_path.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += visit(k, depth + 1) + visit(v, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for v in node.value:
                total += visit(v, depth + 1)
        on_path.discard(key)
        if total > MAX_NODES:
            raise SpecError("", f"{path}: aliases expand to more than {MAX_NODES:,} values", fix="use fewer aliases")
        expanded[key] = total
        return total

    visit(root, 0)


def _check_values(path: Path, value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise SpecError(where, f"the key {k!r} is not a string", fix="quote the key")
            _check_values(path, v, f"{where}.{k}" if where else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_values(path, v, f"{where}[{i}]")
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise SpecError(where, f"YAML read a {type(value).__name__} here", fix="quote the value to make it a string")


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
    """Every pydantic error as one SpecError (field path and fix of each; the first is the error's own)."""
    problems = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]).replace("\n", "\\n")  # a key may hold a newline: one line
        msg = str(err["msg"]).removeprefix("Value error, ").replace("\n", " ")
        problems.append(SpecError(loc, msg, fix=_FIXES.get(err["type"])))
    first = problems[0]
    return SpecError(first.field, first.message.removeprefix(f"{first.field}: "), fix=first.fix, problems=problems)


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
