"""Serving throughput: deployer's local provider vs baseline model servers, measured in one run.

sklearn LogisticRegression on 20 features, 1-row JSON requests, 2 worker processes each, 64
connections, closed-loop load from a separate process on 127.0.0.1 (wrk when on PATH).

    (a) a minimal Starlette + orjson + uvicorn app predicting on a numpy array   goal: >= 0.9x req/s, p99 <= (a)
    (b) a tutorial-style FastAPI + pydantic app                                   goal: >= 2x req/s
    (c) `mlflow models serve` (mlflow in benchmarks/out/mlflow-venv, else skipped) goal: >= 15x req/s

Usage: python benchmarks/serving.py [--seconds 10] [--rounds 1] [--only deployer,starlette,...]
Writes benchmarks/out/serving.json; server logs go to benchmarks/out/serving/*.log.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import OUT, PY, free_port, load, make_model, start, stop, wait_200  # noqa: E402

WORK = OUT / "serving"
MLFLOW_PY = OUT / "mlflow-venv" / "bin" / "python"
ROW = [round(0.1 * i - 1, 2) for i in range(20)]


@contextmanager
def deployer_local(model: Path) -> Iterator[tuple[str, bytes]]:
    """The real local provider: package, store, deploy with 2 workers, poll until ready."""
    import hashlib
    import tarfile

    from deployer.local.provider import LocalOptions, LocalProvider
    from deployer.protocols import ProviderContext
    from deployer.records import Release, Traffic
    from deployer.spec import Resources, Target

    home = WORK / "home"
    archive = WORK / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model, arcname="model.joblib")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    provider = LocalProvider(ProviderContext(target=Target(), options=LocalOptions(), home=home))
    provider.destroy("bench")  # a leftover from an interrupted run
    ref = provider.store().put(archive, digest)
    release = Release(id="r0001", endpoint="bench", fingerprint="bench", artifact=ref, resources=Resources(replicas=2))
    op = provider.deploy_release(release, Traffic.all_to("r0001"))
    while not (status := provider.poll(op)).terminal:
        time.sleep(0.05)
    if status.state != "succeeded":
        raise RuntimeError(status.message)
    url = provider.observe("bench").url  # type: ignore[union-attr]
    try:
        yield f"{url}/predict", json.dumps([ROW]).encode()
    finally:
        op = provider.destroy("bench")
        deadline = time.monotonic() + 30
        while not provider.poll(op).terminal and time.monotonic() < deadline:
            time.sleep(0.05)


def _uvicorn(module: str, body: bytes) -> Callable[[Path], object]:
    @contextmanager
    def run(model: Path) -> Iterator[tuple[str, bytes]]:
        port = free_port()
        cmd = [PY, "-m", "uvicorn", f"benchmarks._baselines.{module}:app", "--workers", "2", "--port", str(port),
               "--no-access-log", "--log-level", "warning", "--http", "httptools", "--loop", "uvloop"]  # fmt: skip
        proc = start(cmd, WORK / f"{module}.log", env={"MODEL_PATH": str(model)})
        url = f"http://127.0.0.1:{port}/predict"
        try:
            wait_200(url, body, proc=proc)
            yield url, body
        finally:
            stop(proc)

    return run


@contextmanager
def mlflow_serve(model: Path) -> Iterator[tuple[str, bytes]]:
    mdir = WORK / "mlflow_model"
    if not mdir.exists():
        code = f"import joblib, mlflow.sklearn; mlflow.sklearn.save_model(joblib.load({str(model)!r}), {str(mdir)!r})"
        proc = start([str(MLFLOW_PY), "-c", code], WORK / "mlflow_save.log")
        if proc.wait(300) != 0:
            raise RuntimeError(f"mlflow save_model failed; see {WORK / 'mlflow_save.log'}")
    port = free_port()
    cmd = [str(MLFLOW_PY), "-m", "mlflow", "models", "serve", "-m", str(mdir), "-p", str(port), "-h", "127.0.0.1",
           "--env-manager", "local", "-w", "2"]  # fmt: skip
    proc = start(cmd, WORK / "mlflow.log", env={"PATH": f"{MLFLOW_PY.parent}:/usr/bin:/bin"})
    url = f"http://127.0.0.1:{port}/invocations"
    body = json.dumps({"inputs": [ROW]}).encode()
    try:
        wait_200(url, body, timeout=180, proc=proc)
        yield url, body
    finally:
        stop(proc)


TARGETS: dict[str, Callable[[Path], object]] = {
    "deployer": deployer_local,
    "starlette": _uvicorn("starlette_app", json.dumps([ROW]).encode()),
    "fastapi": _uvicorn("fastapi_app", json.dumps({"features": [ROW]}).encode()),
    "mlflow": mlflow_serve,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="measure each target this many times; keep the best")
    parser.add_argument("--only", default=",".join(TARGETS))
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model = make_model(WORK / "model")
    names = [n for n in args.only.split(",") if n]
    if "mlflow" in names and not MLFLOW_PY.exists():
        print("mlflow: skipped (no venv at benchmarks/out/mlflow-venv; create it with "
              "`uv venv benchmarks/out/mlflow-venv && VIRTUAL_ENV=benchmarks/out/mlflow-venv uv pip install "
              "mlflow scikit-learn`)")  # fmt: skip
        names.remove("mlflow")
    results: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for name in names:
            try:
                with TARGETS[name](model) as (url, body):  # type: ignore[attr-defined]
                    load(url, body, 2)  # warm-up
                    r = load(url, body, args.seconds)
            except Exception as e:  # a baseline that cannot run is reported, not fatal
                print(f"{name}: skipped ({type(e).__name__}: {e})")
                continue
            print(f"{name:10s} {r['rps']:9.0f} req/s   p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms"
                  f"   non-2xx {int(r['non_2xx'])}")  # fmt: skip
            if name not in results or r["rps"] > results[name]["rps"]:
                results[name] = r
    d = results.get("deployer")
    if d:
        print()
        goals = {"starlette": 0.9, "fastapi": 2.0, "mlflow": 15.0}
        for name, goal in goals.items():
            if name in results:
                ratio = d["rps"] / results[name]["rps"]
                verdict = "ok" if ratio >= goal else "BELOW GOAL"
                print(f"deployer / {name:9s} req/s: {ratio:6.2f}x  (goal >= {goal}x) {verdict}")
        if "starlette" in results:
            p = d["p99_ms"] / results["starlette"]["p99_ms"]
            print(f"deployer / starlette p99:   {p:6.2f}x  (goal <= 1.0x) {'ok' if p <= 1.0 else 'ABOVE GOAL'}")
    (OUT / "serving.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
