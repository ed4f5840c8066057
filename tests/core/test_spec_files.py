"""Spec files that cannot hurt: every hostile file is one typed line, exit 2, in bounded time and memory.

Classes of bad file (each refused by ``deployer.config.read_yaml`` before validation): not UTF-8,
binary, over the size cap, alias-expansion bombs, deep nesting (flow and block), tags that would
construct objects, and values YAML turns into non-JSON types. A hypothesis fuzz of the loader
(random bytes, random YAML documents, mutated valid specs) finds no exception other than SpecError.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployer.config import MAX_DEPTH, MAX_SPEC_BYTES, load_spec, read_yaml
from deployer.errors import DeployerError, SpecError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _bomb(levels: int = 9) -> bytes:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


def _block_nesting(levels: int) -> bytes:
    return ("a:\n" + "".join(" " * i + "b:\n" for i in range(1, levels))).encode()


BAD_FILES: dict[str, tuple[Callable[[], bytes], str]] = {
    "latin1": (lambda: "name: caf\xe9\nmodel: {path: m}\n".encode("latin-1"), "is not UTF-8 text"),
    "utf16": (lambda: "name: x\n".encode("utf-16"), "not YAML text"),
    "binary": (lambda: bytes(range(256)) * 4, "is a binary file"),
    "too_large": (lambda: b"name: x\n" + b"# padding\n" * (MAX_SPEC_BYTES // 10 + 1), "spec files are at most"),
    "alias_bomb": (_bomb, "aliases expand to more than"),
    "flow_nesting": (lambda: b"a: " + b"[" * 100_000, f"nested more than {MAX_DEPTH} levels"),
    "block_nesting": (lambda: _block_nesting(600), f"nested more than {MAX_DEPTH} levels"),
    "python_tag": (
        lambda: b'name: x\nmodel: !!python/object/apply:os.system ["echo pwned"]\n',
        "python/object/apply:os.system' at line 2 is not allowed",
    ),
    "custom_tag": (lambda: b"name: !Ref other\nmodel: {path: m}\n", "'!Ref' at line 1 is not allowed"),
    "binary_value": (lambda: b"name: x\nmodel: {path: !!binary aGVsbG8=}\n", "is not allowed"),
    "set_value": (lambda: b"name: x\ntags: !!set {a, b}\nmodel: {path: m}\n", "is not allowed"),
    "non_string_key": (lambda: b"name: x\nmodel: {path: m}\ntags: {1: one}\n", "the key 1 is not a string"),
    "recursive_alias": (lambda: b"a: &a [*a]\n", ""),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_loader_refuses_each_bad_file_class(case: str, tmp_path: Path) -> None:
    make, text = BAD_FILES[case]
    path = tmp_path / "spec.yaml"
    path.write_bytes(make())
    with pytest.raises(SpecError) as info:
        read_yaml(path)
    assert text in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["latin1", "binary", "too_large", "alias_bomb", "flow_nesting", "python_tag"])
def test_cli_exits_2_with_one_line(case: str, tmp_path: Path) -> None:
    """As a user meets it: `deployer plan FILE` prints one line and exits 2, no traceback, no hang."""
    path = tmp_path / "spec.yaml"
    path.write_bytes(BAD_FILES[case][0]())
    env = {**os.environ, "DEPLOYER_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", "plan", str(path)], capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "ledger.db").exists()


def test_unquoted_dates_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("name: x\nmodel: {path: m}\ntags: {released: 2024-01-31}\n")
    assert read_yaml(path)["tags"] == {"released": "2024-01-31"}


def test_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("base: &b {replicas: 2}\nresources:\n  <<: *b\n  gpus: 0\n")
    assert read_yaml(path)["resources"] == {"replicas": 2, "gpus": 0}


def _check_loader(path: Path) -> None:
    try:
        load_spec(path, environ={})
    except DeployerError as e:
        assert isinstance(e, SpecError), f"{type(e).__name__}: {e}"
        assert "\n" not in str(e)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=30,
)


@pytest.mark.timeout(120)
@FUZZ
@given(data=st.binary(max_size=2048))
def test_fuzz_random_bytes(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    _check_loader(path)


@pytest.mark.timeout(120)
@FUZZ
@given(doc=json_like)
def test_fuzz_random_yaml(doc: object, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _check_loader(path)


@pytest.mark.timeout(120)
@FUZZ
@given(
    base=st.sampled_from(CONFIGS),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=4)), min_size=1, max_size=6),
)
def test_fuzz_mutated_valid_specs(base: Path, edits: list[tuple[int, bytes]], tmp_path: Path) -> None:
    data = bytearray(base.read_bytes())
    for pos, chunk in edits:
        at = pos % (len(data) + 1)
        data[at : at + len(chunk)] = chunk
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(bytes(data))
    _check_loader(path)
