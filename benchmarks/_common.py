"""Helpers shared by the benchmark scripts: processes, readiness, the load generator."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_model(dest: Path, features: int = 20) -> Path:
    """A LogisticRegression on ``features`` features, dumped with joblib."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    x = rng.randn(2000, features)
    y = (x @ rng.randn(features) > 0).astype(int)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "model.joblib"
    joblib.dump(LogisticRegression().fit(x, y), path)
    return path


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, logging to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )  # fmt: skip


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Stop the process group of ``proc``: ``sig``, then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):  # children that outlived their parent
        os.killpg(proc.pid, signal.SIGKILL)


def post(url: str, body: bytes, timeout: float = 2.0) -> int:
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, urllib.error.URLError):
        return 0


def wait_200(url: str, body: bytes, timeout: float = 120, proc: subprocess.Popen[bytes] | None = None) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took."""
    t0 = time.perf_counter()
    while post(url, body, timeout=1.0) != 200:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{url} did not answer 200 within {timeout}s")
        time.sleep(0.005)
    return time.perf_counter() - t0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def load(url: str, body: bytes, seconds: float, connections: int = 64, threads: int = 2) -> dict[str, float]:
    """Closed-loop load from a separate process: wrk when on PATH, else a bounded asyncio generator."""
    if shutil.which("wrk"):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
            lua.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
            lua.write(f"wrk.body = {json.dumps(body.decode())}\n")
        try:
            out = subprocess.run(
                ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                 "-s", lua.name, url],
                capture_output=True, text=True, timeout=seconds + 60, check=True,
            ).stdout  # fmt: skip
        finally:
            os.unlink(lua.name)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
        p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        timeouts = re.search(r"Socket errors:.*timeout (\d+)", out)
        return {
            "rps": rps,
            "p50_ms": p50,
            "p99_ms": p99,
            "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
            "timeouts": float(timeouts.group(1)) if timeouts else 0.0,
        }
    gen = Path(__file__).with_name("_loadgen.py")
    out = subprocess.run(
        [PY, str(gen), url, body.decode(), str(seconds), str(connections)],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip
    return dict(json.loads(out))


def compare_uploads(
    path: Path, digest: str, store: Any, raw_put: Any, raw_delete: Any, rounds: int, labels: tuple[str, str], setup: str
) -> float:
    """Best of ``rounds`` uploads of ``path`` by the raw SDK call (``raw_put``) and by ``store.put`` (hashing
    included), each cleaned up after; prints both throughputs and returns ours / raw."""
    raw_times, ours_times = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        raw_put()
        raw_times.append(time.perf_counter() - t)
        raw_delete()
        t = time.perf_counter()
        store.put(path, digest)
        ours_times.append(time.perf_counter() - t)
        store.delete(digest)
    raw, ours = min(raw_times), min(ours_times)
    mb = path.stat().st_size / 1e6
    width = max(len(label) for label in labels)
    print(f"size: {mb:.0f} MB, {setup}, best of {rounds} rounds")
    print(f"{labels[0]:<{width}}  {raw:6.2f} s  {mb / raw:7.1f} MB/s")
    print(f"{labels[1]:<{width}}  {ours:6.2f} s  {mb / ours:7.1f} MB/s")
    print(f"ratio (ours / raw throughput): {raw / ours:.2f}  (goal >= 0.90)")
    return raw / ours
