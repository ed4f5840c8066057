"""CLI wall times: `deployer --help` and an unchanged redeploy on the local provider.

    uv run python benchmarks/cli.py

Baselines measured in the same run: `python -c pass` (interpreter start-up) and, when it can be
installed into benchmarks/out/mlflow-venv, `mlflow --help`. Bytecode is compiled first, as a pip
install does (this machine sets PYTHONDONTWRITEBYTECODE, which would otherwise recompile every run).
Goals: --help <= 0.15 s; unchanged redeploy <= 0.5 s with zero bytes written to the store.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wall(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def tree_bytes(path: Path) -> tuple[int, float]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    return sum(p.stat().st_size for p in files), max((p.stat().st_mtime for p in files), default=0.0)


def main() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "2", str(Path(sys.prefix) / "lib"),
                    str(ROOT / "deployer")], stdout=subprocess.DEVNULL, check=False)
    base = wall([sys.executable, "-c", "pass"], 10)
    help_t = wall([str(BIN / "deployer"), "--help"], 10)
    print(f"python -c pass          {base * 1000:7.1f} ms")
    print(f"deployer --help         {help_t * 1000:7.1f} ms   goal <= 150 ms: {'met' if help_t <= 0.15 else 'MISSED'}"
          f"   ({help_t / base:.1f}x interpreter start-up)")
    mlflow = ROOT / "benchmarks" / "out" / "mlflow-venv" / "bin" / "mlflow"
    if mlflow.exists():
        ml = wall([str(mlflow), "--help"], 3)
        print(f"mlflow --help           {ml * 1000:7.1f} ms   deployer is {ml / help_t:.1f}x faster")
    else:
        print("mlflow --help           skipped (no benchmarks/out/mlflow-venv; benchmarks/serving.py creates it)")

    home = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    env = {**os.environ, "DEPLOYER_HOME": str(home)}
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), home / "model.joblib")
    spec = home / "spec.yaml"
    spec.write_text(f"name: bench\nmodel: {{path: {home / 'model.joblib'}}}\n")
    deployer = str(BIN / "deployer")
    try:
        t = time.perf_counter()
        subprocess.run([deployer, "deploy", str(spec)], env=env, check=True, capture_output=True)
        first = time.perf_counter() - t
        before = tree_bytes(home / "artifacts")
        redeploy = wall([deployer, "deploy", str(spec)], 7, env)
        after = tree_bytes(home / "artifacts")
        written = after[0] - before[0]
        print(f"first deploy            {first * 1000:7.1f} ms")
        print(f"unchanged redeploy      {redeploy * 1000:7.1f} ms   goal <= 500 ms: "
              f"{'met' if redeploy <= 0.5 else 'MISSED'}   ({redeploy / base:.1f}x interpreter start-up)")
        print(f"bytes written to store  {written} (store unchanged: {before == after})")
    finally:
        subprocess.run([deployer, "destroy", "bench"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
