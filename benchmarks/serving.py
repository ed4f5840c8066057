"""Serving throughput: deployer's local provider vs baseline model servers, measured in one run.

Two models, 1-row JSON requests, 2 worker processes per server, closed-loop load from wrk (or the
Python generator) on 127.0.0.1 at 16 and 64 connections:

    rf:  RandomForestClassifier(100 trees, depth 8) on 20 features
    lr:  LogisticRegression on 20 features, deployer's hand-written fast path OFF

Servers (the same model file each):

    deployer       the real local provider (package, store, deploy, 2 workers; batching on)
    deployer-onnx  the same with serving.compile: onnx (rf only)
    starlette      a minimal Starlette + orjson app predicting on the event loop (the tuned baseline)
    fastapi        a tutorial-style FastAPI + pydantic app (thread pool)
    mlflow         `mlflow models serve` (needs benchmarks/out/mlflow-venv, else skipped)

Beside req/s and p99: wrk's timeouts, CPU-ms per request (user+system time of the server's whole
process group over the run, divided by the requests served) and, for deployer, the distribution of
rows per predict call. Goals (issue 12): rf >= 5x starlette req/s at c64 with p99 <= 0.5x and 0
timeouts; lr (fast path off) >= 2x starlette.

Usage: python benchmarks/serving.py [--seconds 8] [--rounds 1] [--only deployer,starlette,...] [--models rf,lr]
Writes benchmarks/out/serving.json; server logs go to benchmarks/out/serving/*.log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import OUT, PY, free_port, load, start, stop, wait_200  # noqa: E402

WORK = OUT / "serving"
MLFLOW_PY = OUT / "mlflow-venv" / "bin" / "python"
ROW = [round(0.1 * i - 1, 2) for i in range(20)]
CONNECTIONS = (16, 64)
GOALS = {"rf": 5.0, "lr": 2.0}


def make_models(dest: Path) -> dict[str, Path]:
    """The two benchmark models, dumped with joblib under ``dest``."""
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    x = rng.randn(4000, 20)
    y = (x @ rng.randn(20) + 0.5 * x[:, 0] * x[:, 1] > 0).astype(int)
    out = {}
    for name, model in (
        ("rf", RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)),
        ("lr", LogisticRegression()),
    ):
        d = dest / name
        d.mkdir(parents=True, exist_ok=True)
        joblib.dump(model.fit(x, y), d / "model.joblib")
        out[name] = d / "model.joblib"
    return out


def _group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes in process group ``pgid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _metrics(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.rsplit("/", 1)[0] + "/metrics", timeout=5) as resp:
        releases = json.loads(resp.read())["releases"]
    return releases.get("r0001", {})


@contextmanager
def deployer_local(model: Path, compile_onnx: bool = False) -> Iterator[tuple[str, bytes, int]]:
    """The real local provider: package (with spec.serving), store, deploy with 2 workers, poll until ready."""
    from deployer.artifacts import identify, upload
    from deployer.local.provider import LocalOptions, LocalProvider
    from deployer.protocols import ProviderContext
    from deployer.records import Release, Traffic
    from deployer.spec import Resources, Serving, Target

    home = WORK / "home"
    provider = LocalProvider(ProviderContext(target=Target(), options=LocalOptions(), home=home))
    provider.destroy("bench")  # a leftover from an interrupted run
    packaged = identify(model.parent, serving=Serving(compile="onnx" if compile_onnx else "none"))
    for note in packaged.notes:
        print(f"  {note}")
    ref = upload(packaged, provider.store())
    release = Release(id="r0001", endpoint="bench", fingerprint="bench", artifact=ref, resources=Resources(replicas=2))
    op = provider.deploy_release(release, Traffic.all_to("r0001"))
    while not (status := provider.poll(op)).terminal:
        time.sleep(0.05)
    if status.state != "succeeded":
        raise RuntimeError(status.message)
    obs = provider.observe("bench")
    assert obs is not None and obs.url
    try:
        yield f"{obs.url}/predict", json.dumps([ROW]).encode(), int(obs.meta["pid"])
    finally:
        op = provider.destroy("bench")
        deadline = time.monotonic() + 30
        while not provider.poll(op).terminal and time.monotonic() < deadline:
            time.sleep(0.05)


def _uvicorn(module: str, body: bytes) -> Callable[[Path], Any]:
    @contextmanager
    def run(model: Path) -> Iterator[tuple[str, bytes, int]]:
        port = free_port()
        cmd = [PY, "-m", "uvicorn", f"benchmarks._baselines.{module}:app", "--workers", "2", "--port", str(port),
               "--no-access-log", "--log-level", "warning", "--http", "httptools", "--loop", "uvloop"]  # fmt: skip
        proc = start(cmd, WORK / f"{module}.log", env={"MODEL_PATH": str(model)})
        url = f"http://127.0.0.1:{port}/predict"
        try:
            wait_200(url, body, proc=proc)
            yield url, body, proc.pid
        finally:
            stop(proc)

    return run


@contextmanager
def mlflow_serve(model: Path) -> Iterator[tuple[str, bytes, int]]:
    mdir = WORK / f"mlflow_model_{model.parent.name}"
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
        yield url, body, proc.pid
    finally:
        stop(proc)


TARGETS: dict[str, Callable[[Path], Any]] = {
    "deployer": deployer_local,
    "deployer-onnx": lambda model: deployer_local(model, compile_onnx=True),
    "starlette": _uvicorn("starlette_app", json.dumps([ROW]).encode()),
    "fastapi": _uvicorn("fastapi_app", json.dumps({"features": [ROW]}).encode()),
    "mlflow": mlflow_serve,
}


def measure(name: str, model: Path, seconds: float) -> dict[str, dict[str, Any]]:
    """Every connection count against one server; batch sizes for deployer's."""
    out: dict[str, dict[str, Any]] = {}
    with TARGETS[name](model) as (url, body, pgid):
        load(url, body, 2, connections=16)  # warm-up
        for conns in CONNECTIONS:
            before = _metrics(url) if name.startswith("deployer") else {}
            cpu0 = _group_cpu_s(pgid)
            r = load(url, body, seconds, connections=conns)
            cpu = _group_cpu_s(pgid) - cpu0
            served = max(1.0, r["rps"] * seconds)
            r["cpu_ms_per_req"] = round(cpu * 1000.0 / served, 3)
            if before:
                after = _metrics(url)
                b0 = before.get("batch_sizes", {})
                sizes = {k: n - b0.get(k, 0) for k, n in after.get("batch_sizes", {}).items()}
                r["batch_sizes"] = {k: n for k, n in sizes.items() if n}
            out[f"c{conns}"] = r
    return out


def _line(label: str, r: dict[str, Any]) -> str:
    line = (f"{label:24s} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
            f"timeouts {int(r.get('timeouts', 0))}  non-2xx {int(r['non_2xx'])}  "
            f"cpu {r['cpu_ms_per_req']:.3f} ms/req")  # fmt: skip
    if "batch_sizes" in r:
        line += "  batches " + " ".join(f"<={k}:{n}" for k, n in r["batch_sizes"].items())
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="measure each target this many times; keep the best")
    parser.add_argument("--only", default="deployer,deployer-onnx,starlette,fastapi,mlflow")
    parser.add_argument("--models", default="rf,lr")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ["DEPLOYER_SKLEARN_FAST_PATH"] = "0"  # inherited by the supervisor: measure the server, not the shortcut
    models = make_models(WORK / "models")
    names = [n for n in args.only.split(",") if n]
    if "mlflow" in names and not MLFLOW_PY.exists():
        print("mlflow: skipped (no venv at benchmarks/out/mlflow-venv)")
        names.remove("mlflow")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for mname in [m for m in args.models.split(",") if m]:
        print(f"== {mname}")
        for _ in range(args.rounds):
            for name in names:
                if name == "deployer-onnx" and mname != "rf":
                    continue
                try:
                    got = measure(name, models[mname], args.seconds)
                except Exception as e:  # a baseline that cannot run is reported, not fatal
                    print(f"{name}: skipped ({type(e).__name__}: {e})")
                    continue
                key = f"{mname}/{name}"
                for conns, r in got.items():
                    print(_line(f"{key} {conns}", r))
                    best = results.setdefault(key, {})
                    if conns not in best or r["rps"] > best[conns]["rps"]:
                        best[conns] = r
    print()
    for mname, goal in GOALS.items():
        base = results.get(f"{mname}/starlette")
        for name in ("deployer", "deployer-onnx"):
            ours = results.get(f"{mname}/{name}")
            if not ours or not base:
                continue
            for conns in ours:
                ratio = ours[conns]["rps"] / base[conns]["rps"]
                p99 = ours[conns]["p99_ms"] / base[conns]["p99_ms"]
                verdict = "ok" if ratio >= goal else "BELOW GOAL"
                print(f"{mname} {name:13s} {conns}: {ratio:5.2f}x starlette req/s (goal >= {goal}x {verdict}), "
                      f"p99 {p99:4.2f}x, timeouts {int(ours[conns].get('timeouts', 0))}")  # fmt: skip
            fast = results.get(f"{mname}/fastapi")
            if fast:
                for conns in ours:
                    print(f"{mname} {name:13s} {conns}: {ours[conns]['rps'] / fast[conns]['rps']:5.2f}x fastapi req/s")
    (OUT / "serving.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
