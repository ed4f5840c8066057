"""Build contexts: byte-identical across builds, pinned to the model's recorded versions, hadolint-clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer import artifacts
from deployer.cli import cli
from deployer.containers import write_context
from deployer.errors import SpecError
from deployer.spec import Spec
from tests.containers.conftest import Flavored

pytestmark = pytest.mark.timeout(60)


def spec_of(model: Flavored, name: str = "iris", **extra: object) -> Spec:
    source = {"path": str(model.src), "flavor": model.flavor}
    if model.entrypoint:
        source["entrypoint"] = model.entrypoint
    return Spec.model_validate({"name": name, "target": {"provider": "local"}, "model": source, **extra})


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("flavor", ["sklearn", "onnx", "python"])
def test_the_context_is_byte_identical_across_two_builds(
    flavor: str, flavored: dict[str, Flavored], tmp_path: Path
) -> None:
    spec = spec_of(flavored[flavor])
    a = write_context(spec, tmp_path / "a")
    b = write_context(spec, tmp_path / "b")
    assert a.digest == b.digest
    ta, tb = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert ta == tb and len(ta) > 10
    stats = {
        (p.relative_to(tmp_path / "a").as_posix(), p.stat().st_mtime, p.stat().st_mode)
        for p in (tmp_path / "a").rglob("*")
    }
    assert stats == {
        (p.relative_to(tmp_path / "b").as_posix(), p.stat().st_mtime, p.stat().st_mode)
        for p in (tmp_path / "b").rglob("*")
    }
    # the image is labelled with the release's artifact identity (the content manifest's digest)
    assert artifacts.identify(Path(spec.model.path), spec.serving, spec.model.flavor).digest == a.artifact
    assert artifacts.read_manifest(tmp_path / "a" / "model" / "model.tar.gz")["files"]
    dockerfile = ta["Dockerfile"].decode()
    assert "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n" in dockerfile
    assert f'ai.deployer.artifact="sha256:{a.artifact}"' in dockerfile and f"DEPLOYER_FLAVOR={flavor}" in dockerfile
    assert "runtime/deployer/serving/contracts.py" in ta and not any("__pycache__" in n for n in ta)


def test_requirements_are_pinned_to_the_models_recorded_versions(flavored: dict[str, Flavored], tmp_path: Path) -> None:
    ctx = write_context(spec_of(flavored["sklearn"]), tmp_path / "ctx")
    recorded = artifacts.read_manifest(tmp_path / "ctx" / "model" / "model.tar.gz")["runtime"]
    reqs = (tmp_path / "ctx" / "requirements.txt").read_text().split()
    assert f"scikit-learn=={recorded['scikit-learn']}" in reqs and f"numpy=={recorded['numpy']}" in reqs
    assert all("==" in r for r in reqs) and list(ctx.requirements) == reqs
    onnx = write_context(spec_of(flavored["onnx"]), tmp_path / "onnx")
    assert not any(r.startswith("scikit-learn") for r in onnx.requirements)
    assert any(r.startswith("onnxruntime==") for r in onnx.requirements)
    served_as_graph = write_context(spec_of(flavored["sklearn"], serving={"compile": "onnx"}), tmp_path / "compiled")
    assert any(r.startswith("onnxruntime==") for r in served_as_graph.requirements), "the graph needs onnxruntime"


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "hadolint"
    return subprocess.run([str(binary), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("wheelhouse", [False, True])
def test_the_dockerfile_passes_hadolint(wheelhouse: bool, flavored: dict[str, Flavored], tmp_path: Path) -> None:
    from deployer.containers import dockerfile

    path = tmp_path / "Dockerfile"
    path.write_text(dockerfile("3.11", "python", "0" * 64, "iris", "rowsum:Model", wheelhouse))
    result = _hadolint(path)
    assert result.returncode == 0, result.stdout + result.stderr
    path.write_text(path.read_text() + "RUN pip install requests\n")  # hadolint does fail a bad one
    assert _hadolint(path).returncode != 0


def test_the_cli_writes_the_context_where_there_is_no_engine(
    flavored: dict[str, Flavored], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYER_CONTAINER_ENGINE", "no-such-engine")
    spec = tmp_path / "iris.yaml"
    spec.write_text(
        f"name: iris\ntarget: {{provider: local}}\nmodel: {{path: {flavored['sklearn'].src}, flavor: sklearn}}\n"
    )
    result = CliRunner().invoke(cli, ["build", str(spec), "--out", str(tmp_path / "ctx"), "--json"])
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert last["image"] is None and last["context"] == str(tmp_path / "ctx")
    assert (tmp_path / "ctx" / "Dockerfile").is_file()
    again = CliRunner().invoke(cli, ["build", str(spec), "--out", str(tmp_path / "ctx")])
    assert again.exit_code == 2 and "is not empty" in again.output
    nowhere = CliRunner().invoke(cli, ["build", str(spec)])
    assert nowhere.exit_code == 2 and "no container engine" in nowhere.output


def test_push_needs_a_tag_and_offline_needs_a_wheelhouse(flavored: dict[str, Flavored], tmp_path: Path) -> None:
    from deployer.containers import build

    with pytest.raises(SpecError, match="--push needs"):
        build(spec_of(flavored["sklearn"]), out=tmp_path / "a", push=True)
    with pytest.raises(SpecError, match="wheelhouse"):
        build(spec_of(flavored["sklearn"]), out=tmp_path / "b", offline=True)
