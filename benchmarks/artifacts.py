"""Artifacts at the speed of the disk: unchanged redeploys, the first deploy of a big model, TMPDIR leaks.

    uv run --all-packages python benchmarks/artifacts.py [--sizes-mb 0.001,100,500]

Models are a small fitted ``model.joblib`` plus ``weights.bin`` of random (incompressible) bytes, so
the 1 KB, 100 MB and 500 MB models differ only in the bytes a deploy would have to read. Every deploy
is the real CLI (``deployer deploy spec.yaml``) on the local provider, in a private ``DEPLOYER_HOME``
and ``TMPDIR``. Baselines measured in the same run, on the same (page-cached) file:

* unchanged redeploy  vs  streaming sha256 of the weights file (goals: 500 MB redeploy <= 0.5 s and
  <= 1.5x the 1 KB one);
* first deploy of the largest model  vs  ``cp`` of the file plus its sha256 (goal <= 3x);
* bytes left in ``TMPDIR`` after 10 deploys, each of a changed model (goal 0).

Bytecode is compiled first, as a pip install does (PYTHONDONTWRITEBYTECODE would otherwise make every
CLI start recompile).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOYER = str(Path(sys.executable).parent / "deployer")


def best(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def median_wall(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def make_model(root: Path, size: int) -> Path:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root.mkdir(parents=True)
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), root / "model.joblib")
    with open(root / "weights.bin", "wb") as fh:
        left = size
        while left > 0:
            n = min(left, 8 << 20)
            fh.write(os.urandom(n))
            left -= n
    return root


def spec_for(work: Path, name: str, model: Path) -> Path:
    spec = work / f"{name}.yaml"
    spec.write_text(f"name: {name}\nmodel: {{path: {model}}}\n")
    return spec


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mb", default="0.001,100,500")
    args = parser.parse_args()
    sizes = [int(float(s) * (1 << 20)) for s in args.sizes_mb.split(",")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "2", str(Path(sys.prefix) / "lib"),
                    str(ROOT / "deployer")], stdout=subprocess.DEVNULL, check=False)
    from deployer.digests import sha256_file

    work = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
    tmp = work / "tmp"
    tmp.mkdir()
    env = {**os.environ, "DEPLOYER_HOME": str(work / "home"), "TMPDIR": str(tmp)}
    names: list[str] = []
    try:
        redeploys: dict[int, float] = {}
        for size in sizes:
            name = f"bench-{size >> 10}k"
            names.append(name)
            model = make_model(work / name, size)
            weights = model / "weights.bin"
            sha256_file(weights)  # into the page cache, as the deploy's file will be
            sha = best(lambda w=weights: sha256_file(w), 3)
            spec = spec_for(work, name, model)
            t = time.perf_counter()
            subprocess.run([DEPLOYER, "deploy", str(spec)], env=env, check=True, capture_output=True)
            first = time.perf_counter() - t
            redeploy = median_wall([DEPLOYER, "deploy", str(spec)], 3, env)
            redeploys[size] = redeploy
            print(f"{size / (1 << 20):9.3f} MB  unchanged redeploy {redeploy * 1000:7.1f} ms   "
                  f"sha256 of the file {sha * 1000:7.1f} ms   ratio {redeploy / sha:6.2f}x   "
                  f"(first deploy {first:.2f} s)")
            if size == max(sizes):
                copy = work / "copy.bin"

                def cp_and_sha(src: Path = weights, dest: Path = copy) -> None:
                    subprocess.run(["cp", str(src), str(dest)], check=True)
                    sha256_file(dest)
                    dest.unlink()

                base = best(cp_and_sha, 2)
                print(f"first local deploy of {size / (1 << 20):.0f} MB: {first:.2f} s   cp + sha256 {base:.2f} s   "
                      f"ratio {first / base:.2f}x (goal <= 3x: {'met' if first <= 3 * base else 'MISSED'})")
        small, large = redeploys[min(sizes)], redeploys[max(sizes)]
        print(f"largest redeploy / smallest: {large / small:.2f}x (goal <= 1.5x: "
              f"{'met' if large <= 1.5 * small else 'MISSED'}); largest redeploy {large:.3f} s (goal <= 0.5 s: "
              f"{'met' if large <= 0.5 else 'MISSED'})")

        leak = make_model(work / "leak", 1024)
        spec = spec_for(work, "bench-leak", leak)
        names.append("bench-leak")
        for i in range(10):
            with open(leak / "weights.bin", "r+b") as fh:
                fh.write(bytes([i]))
            subprocess.run([DEPLOYER, "deploy", str(spec)], env=env, check=True, capture_output=True)
        left = tree_bytes(tmp)
        print(f"bytes left in TMPDIR after 10 deploys: {left} ({len(list(tmp.iterdir()))} entries; goal 0: "
              f"{'met' if left == 0 and not any(tmp.iterdir()) else 'MISSED'})")
    finally:
        for name in names:
            subprocess.run([DEPLOYER, "destroy", name], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
