"""Cold start: seconds from running the command to the first HTTP 200 from /predict.

    deployer:  `deployer serve SPEC` (when the CLI has `serve`), else `python -m deployer.local.serve MODEL`
    baseline:  `uvicorn benchmarks._baselines.starlette_app:app` (Starlette + orjson, model loaded at import)

One worker each, the same sklearn LogisticRegression (20 features), alternating runs; the median
of ``--runs`` is compared. Goal (issue 12): deployer <= 1.0x the baseline.

Usage: python benchmarks/cold_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import OUT, PY, free_port, make_model, start, stop, wait_200  # noqa: E402

WORK = OUT / "cold_start"
BODY = json.dumps([[round(0.1 * i - 1, 2) for i in range(20)]]).encode()


def _cli_has_serve() -> str | None:
    exe = shutil.which("deployer") or str(Path(PY).with_name("deployer"))
    if not Path(exe).exists():
        return None
    try:
        ok = subprocess.run([exe, "serve", "--help"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None
    return exe if ok else None


def deployer_cmd(model: Path, port: int, cli: str | None) -> list[str]:
    if cli is None:
        return [PY, "-m", "deployer.local.serve", str(model), "--port", str(port), "--workers", "1"]
    spec = WORK / f"spec-{port}.yaml"
    spec.write_text(
        "name: bench\n"
        f"model:\n  path: {model}\n  flavor: sklearn\n"
        "target:\n  provider: local\n"
        f"provider_options:\n  port: {port}\n"
    )
    return [cli, "serve", str(spec)]


def starlette_cmd(model: Path, port: int) -> list[str]:
    return [PY, "-m", "uvicorn", "benchmarks._baselines.starlette_app:app", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--http", "httptools", "--loop", "uvloop"]  # fmt: skip


def once(cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = start(cmd, log, env=env)
    try:
        wait_200(f"http://127.0.0.1:{port}/predict", BODY, timeout=120, proc=proc)
        return time.perf_counter() - t0
    finally:
        stop(proc, sig=signal.SIGINT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model = make_model(WORK / "model")
    cli = _cli_has_serve()
    label = "deployer serve SPEC" if cli else "python -m deployer.local.serve MODEL"
    times: dict[str, list[float]] = {"deployer": [], "starlette": []}
    once(starlette_cmd(model, p := free_port()), p, WORK / "warmup.log", env={"MODEL_PATH": str(model)})  # disk cache
    for i in range(args.runs):
        p = free_port()
        times["deployer"].append(once(deployer_cmd(model, p, cli), p, WORK / f"deployer-{i}.log"))
        p = free_port()
        times["starlette"].append(
            once(starlette_cmd(model, p), p, WORK / f"starlette-{i}.log", env={"MODEL_PATH": str(model)})
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, values in times.items():
        print(f"{name:10s} median {med[name]:.3f} s   runs {', '.join(f'{v:.3f}' for v in values)}")
    ratio = med["deployer"] / med["starlette"]
    print(f"\n{label} / starlette: {ratio:.2f}x  (goal <= 1.0x) {'ok' if ratio <= 1.0 else 'ABOVE GOAL'}")
    (OUT / "cold_start.json").write_text(json.dumps({"command": label, "times": times, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
