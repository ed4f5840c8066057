"""Container images of any model: a deterministic build context, built and pushed with Docker or Podman.

:func:`write_context` turns a spec's model into a directory an engine can build::

    Dockerfile          ARG BASE_IMAGE=python:<the model's python>-slim; a venv; the runtime's
                        requirements installed (from wheels/ with --no-index when there is a wheelhouse);
                        ENTRYPOINT python3 -m deployer.serving (see deployer.serving.contracts)
    requirements.txt    pinned: scikit-learn and numpy to the versions the model was packaged with (its
                        manifest), the runtime's own libraries to the versions installed here
    runtime/deployer/   deployer's source (the runtime; only its serving code runs in the image)
    model/model.tar.gz  the model's deterministic artifact (its sha256 is the image's label)
    wheels/             with ``wheelhouse``: every wheel the requirements need, downloaded here with pip

The same spec and environment give the same bytes: files are written in sorted order with fixed
modes and mtimes, the artifact is deterministic, and the context's sha256 (:attr:`BuildContext.digest`)
names the default tag. :func:`build` then runs ``docker build`` (or ``podman build``) with the base
image as a build argument, tags the image and, with ``push``, pushes it, reporting each line of the
engine's output as a :class:`~deployer.events.Progress` event.

The image serves the model under SageMaker's, Vertex AI's, Azure ML's or deployer's own container
contract and the Open Inference Protocol, whichever the environment it runs in names.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deployer import artifacts
from deployer.errors import CapabilityError, DeployerError, SpecError
from deployer.events import EventFn, StepDone
from deployer.scratch import scratch
from deployer.spec import Spec

MTIME = 315532800
"""The mtime of every file in a context (1980-01-01, the oldest a zip or wheel can hold)."""
RUNTIME_LIBRARIES = ("orjson", "uvicorn", "click", "h11", "joblib")
"""What the runtime itself imports in the image (besides the flavor's libraries)."""
FLAVOR_LIBRARIES = {"sklearn": ("scikit-learn", "numpy"), "onnx": ("onnxruntime", "numpy"), "python": ("numpy",)}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
"""Wheel platforms a wheelhouse is downloaded for (glibc Linux on x86-64, e.g. Debian bookworm)."""
WHEELS = "wheels"


@dataclass(frozen=True)
class BuildContext:
    """A written build context and what it holds."""

    path: Path
    digest: str
    """sha256 over every file's name and bytes: equal digests, equal contexts."""
    artifact: str
    """sha256 of the model's artifact (the image's ``ai.deployer.artifact`` label)."""
    flavor: str
    python: str
    requirements: tuple[str, ...]


@dataclass(frozen=True)
class Built:
    """What :func:`build` did: the context, and the image tag when an engine built it."""

    context: BuildContext
    image: str | None
    engine: str | None
    pushed: bool = False


def _say(on_event: EventFn | None, name: str, step: str, detail: str) -> None:
    if on_event is not None:
        on_event(StepDone(name, step=step, outcome="ok", detail=detail))


def requirements(flavor: str, runtime: dict[str, str], compiled: bool = False) -> list[str]:
    """Pinned requirements of the image: the model's recorded versions first, then what is installed here.

    ``compiled``: the artifact holds an ONNX graph served instead of the model (``serving.compile: onnx``).
    """
    pins: dict[str, str | None] = {}
    extra = ("onnxruntime",) if compiled else ()
    for dist in (*FLAVOR_LIBRARIES.get(flavor, ()), *extra, *RUNTIME_LIBRARIES):
        recorded = runtime.get(dist)
        pins[dist] = recorded or _installed(dist)
    return sorted(f"{d}=={v}" if v else d for d, v in pins.items())


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def dockerfile(python: str, flavor: str, artifact: str, name: str, entrypoint: str | None, wheelhouse: bool) -> str:
    """The Dockerfile text (hadolint-clean; the base image is the ``BASE_IMAGE`` build argument)."""
    if wheelhouse:
        install = (
            f"COPY {WHEELS}/ /opt/deployer/{WHEELS}/\n"
            "RUN /opt/deployer/venv/bin/pip install --no-cache-dir --no-index "
            f"--find-links /opt/deployer/{WHEELS} -r /opt/deployer/requirements.txt \\\n"
            f"    && rm -rf /opt/deployer/{WHEELS}\n"
        )
    else:
        install = "RUN /opt/deployer/venv/bin/pip install --no-cache-dir -r /opt/deployer/requirements.txt\n"
    env = [
        "PATH=/opt/deployer/venv/bin:$PATH",
        "PYTHONPATH=/opt/deployer/runtime",
        "PYTHONUNBUFFERED=1",
        "DEPLOYER_BUILTIN_MODEL=/opt/deployer/model",
        f"DEPLOYER_FLAVOR={flavor}",
        f"DEPLOYER_MODEL_NAME={name}",
    ]
    if entrypoint:
        env.append(f"DEPLOYER_ENTRYPOINT={entrypoint}")
    env_lines = " \\\n    ".join(env)
    return (
        "# Generated by deployer build: the model, deployer's serving runtime and their pinned requirements.\n"
        f"ARG BASE_IMAGE=python:{python}-slim\n"
        "FROM ${BASE_IMAGE}\n"
        f'LABEL ai.deployer.artifact="sha256:{artifact}" ai.deployer.flavor="{flavor}" ai.deployer.model="{name}"\n'
        "RUN python3 -m venv /opt/deployer/venv\n"
        "COPY requirements.txt /opt/deployer/requirements.txt\n"
        f"{install}"
        "COPY runtime/ /opt/deployer/runtime/\n"
        "COPY model/ /opt/deployer/model/\n"
        f"ENV {env_lines}\n"
        "EXPOSE 8080\n"
        'ENTRYPOINT ["python3", "-m", "deployer.serving"]\n'
    )


def _runtime_files() -> Iterable[tuple[str, Path]]:
    """(name in the context, file) of deployer's source, sorted; no bytecode."""
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed"):
            yield f"runtime/deployer/{path.relative_to(root).as_posix()}", path


def _model_source(spec: Spec) -> Path:
    if spec.model.flavor == "container":
        raise SpecError("model.flavor", "flavor 'container' is already an image", fix="build a model of another flavor")
    if spec.model.path is not None:
        return Path(spec.model.path)
    if spec.model.uri is not None:
        from deployer.paths import home
        from deployer.sources import fetch

        want = spec.model.digest.removeprefix("sha256:") if spec.model.digest else None
        return fetch(spec.model.uri, want, home()).path
    raise SpecError("model.path", "there is no model to build an image of", fix="set model.path or model.uri")


def write_context(
    spec: Spec, out: Path, *, wheelhouse: bool = False, wheel_cache: Path | None = None, on_event: EventFn | None = None
) -> BuildContext:
    """Write the build context of ``spec``'s model into the empty or missing directory ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SpecError("--out", f"{out} is not empty", fix="name a new or empty directory for the build context")
    flavor = spec.model.flavor
    with scratch("build") as work:
        if spec.model.obj is not None:
            packaged = artifacts.archive(artifacts.identify_object(spec.model.obj, serving=spec.serving), work)
        else:
            packaged = artifacts.package(_model_source(spec), Path(work), serving=spec.serving, flavor=flavor)
        runtime = dict(artifacts.read_manifest(packaged.path).get("runtime", {}))
        python = ".".join(str(runtime.get("python", "3.11")).split(".")[:2])
        reqs = requirements(flavor, runtime, compiled=spec.serving.compile == "onnx")
        files: dict[str, bytes | Path] = {
            "Dockerfile": dockerfile(
                python, flavor, packaged.digest, spec.name, spec.model.entrypoint, wheelhouse
            ).encode(),
            "requirements.txt": ("\n".join(reqs) + "\n").encode(),
            f"model/{artifacts.ARTIFACT_NAME}": packaged.path,
            **dict(_runtime_files()),
        }
        if wheelhouse:
            for wheel in _wheelhouse(reqs, python, wheel_cache, on_event, spec.name):
                files[f"{WHEELS}/{wheel.name}"] = wheel
        _say(on_event, spec.name, "build.context", f"{len(files)} files, model sha256:{packaged.digest[:12]}")
        digest = _write(out, files)
    return BuildContext(out, digest, packaged.digest, flavor, python, tuple(reqs))


def _write(out: Path, files: dict[str, bytes | Path]) -> str:
    """Write ``files`` under ``out`` in sorted order with fixed modes and mtimes; their sha256."""
    whole = hashlib.sha256()
    for name in sorted(files):
        item = files[name]
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(item, bytes):
            target.write_bytes(item)
        else:
            shutil.copyfile(item, target)
        os.chmod(target, 0o644)
        os.utime(target, (MTIME, MTIME))
        whole.update(name.encode() + b"\0" + hashlib.sha256(target.read_bytes()).digest())
    for folder in sorted({p for p in out.rglob("*") if p.is_dir()}, reverse=True):
        os.utime(folder, (MTIME, MTIME))
    os.utime(out, (MTIME, MTIME))
    return whole.hexdigest()


def _pip() -> list[str]:
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    found = shutil.which("pip3") or shutil.which("pip")
    if found is None:
        raise CapabilityError("--wheelhouse needs pip", hint="install pip (python -m ensurepip) or build without it")
    return [found]


def _wheelhouse(reqs: list[str], python: str, cache: Path | None, on_event: EventFn | None, name: str) -> list[Path]:
    """The wheels ``reqs`` need on the image's Python and platform, downloaded once into ``cache``."""
    key = hashlib.sha256("\n".join([python, *PLATFORMS, *reqs]).encode()).hexdigest()[:24]
    if cache is None:
        from deployer.paths import home

        cache = home() / "wheelhouse"
    done = cache / key
    if not done.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        cmd = [*_pip(), "download", "--quiet", "--only-binary=:all:", "--python-version", python]
        cmd += ["--implementation", "cp", *platforms, "--dest", str(tmp), *reqs]
        _say(on_event, name, "build.wheelhouse", f"pip download {' '.join(reqs)}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise DeployerError(
                "pip download for the wheelhouse failed: " + " / ".join(tail),
                hint="check the pinned versions exist as wheels for Linux x86-64, or build without --wheelhouse",
            )
        try:
            os.rename(tmp, done)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return sorted(done.glob("*.whl"))


def find_engine(engine: str | None = None) -> str | None:
    """The container engine to build with: ``engine``, ``DEPLOYER_CONTAINER_ENGINE``, docker, podman."""
    wanted = engine or os.environ.get("DEPLOYER_CONTAINER_ENGINE")
    if wanted:
        return shutil.which(wanted) or None
    return shutil.which("docker") or shutil.which("podman")


def default_tag(spec: Spec, context: BuildContext) -> str:
    return f"deployer/{spec.name}:{context.digest[:12]}"


def build(
    spec: Spec,
    *,
    out: Path | None = None,
    tag: str | None = None,
    base_image: str | None = None,
    wheelhouse: bool = False,
    wheel_cache: Path | None = None,
    push: bool = False,
    engine: str | None = None,
    offline: bool = False,
    on_event: EventFn | None = None,
) -> Built:
    """Write ``spec``'s build context (into ``out``, else a directory that is removed after the build)
    and build it when an engine is present; ``push`` pushes ``tag`` (a name in the user's registry).

    ``offline`` builds with no network (``--network none``; needs ``wheelhouse``). Without an engine
    and without ``out`` there is nothing to keep: a :class:`CapabilityError` says so.
    """
    if push and not tag:
        raise SpecError("--tag", "--push needs the image's name in your registry", fix="pass --tag REGISTRY/NAME:TAG")
    if offline and not wheelhouse:
        raise SpecError("--offline", "an offline build installs from a wheelhouse", fix="add --wheelhouse")
    binary = find_engine(engine)
    if binary is None and out is None:
        raise CapabilityError(
            "no container engine (docker or podman) is installed",
            hint="install Docker or Podman, or pass --out DIR to write the build context only",
        )
    with contextlib.ExitStack() as stack:
        where = Path(out) if out is not None else stack.enter_context(scratch("context"))
        context = write_context(spec, where, wheelhouse=wheelhouse, wheel_cache=wheel_cache, on_event=on_event)
        if binary is None:
            return Built(context, None, None)
        image = tag or default_tag(spec, context)
        cmd = [binary, "build", "--tag", image]
        if base_image:
            cmd += ["--build-arg", f"BASE_IMAGE={base_image}"]
        if offline:
            cmd += ["--network", "none"]
        _run(spec.name, "build", [*cmd, str(where)], on_event)
        if push:
            _run(spec.name, "push", [binary, "push", image], on_event)
        return Built(context, image, Path(binary).name, pushed=push)


_STEP = re.compile(r"^(?:Step|STEP) (\d+)/(\d+)\s*:?\s*(.*)$|^#\d+ \[(?:[^\]]* )?(\d+)/(\d+)\] (.*)$")
_PUSHED = re.compile(r": digest: (sha256:[0-9a-f]{64})")


def _run(name: str, task: str, cmd: list[str], on_event: EventFn | None) -> None:
    """Run an engine command, saying each build step (and the pushed digest); a failure names its last lines."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for raw in proc.stdout:
        line = raw.rstrip()
        if not line:
            continue
        tail = [*tail[-9:], line]
        step = _STEP.match(line)
        pushed = _PUSHED.search(line)
        if step is not None:
            n, total, what = (g for g in step.groups() if g is not None)
            _say(on_event, name, task, f"{task} step {n}/{total}: {what[:160]}")
        elif pushed is not None:
            _say(on_event, name, task, f"pushed {pushed.group(1)}")
    if proc.wait() != 0:
        raise DeployerError(
            f"{Path(cmd[0]).name} {task} failed (exit {proc.returncode}): " + " / ".join(tail[-3:]),
            hint="read the engine's output above; run the same command by hand to see all of it",
        )
