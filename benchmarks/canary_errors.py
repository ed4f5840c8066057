"""Failed requests during a full canary rollout under load, and the rollout's duration.

v1 is live; v2 (a healthy python-flavor model) is rolled out with a canary of 10%, 50%, 100%
(``--bake`` seconds each) behind two metric gates (error rate <= 1% and p99 <= 200 ms, each
judged on at least 20 requests), while ``tests/local/load.py`` (a second process, 127.0.0.1)
sends ``--rps`` requests per second. Goal: 0 failed requests. Each round rolls out a new release
(v2, v3, ...), so every round is a full canary and promotion.

The rollout's duration is compared with its floor, the sum of the bakes (the time the strategy
itself asks for): the ratio is the engine's overhead (routing, waiting for workers, gate reads).

Usage: python benchmarks/canary_errors.py [--rounds 3] [--rps 400] [--bake 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from local.load import Load, failures_by_release  # noqa: E402
from local.models import canary, model_spec, spec_dict, teardown  # noqa: E402

GATES = [
    {"type": "metric", "name": "errors", "metric": "error_rate", "max": 0.01, "min_samples": 20},
    {"type": "metric", "name": "p99", "metric": "p99_ms", "max": 200, "min_samples": 20},
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rps", type=float, default=400)
    p.add_argument("--bake", type=float, default=2.0)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deployer-bench-canary-"))
    home = work / "home"
    os.environ["DEPLOYER_HOME"] = str(home)
    os.environ.pop("DEPLOYER_LOCAL_TOKEN", None)

    import deployer
    from deployer.spec import Spec

    name = "bench-canary"
    rounds: list[dict[str, Any]] = []
    try:
        ep = deployer.apply(Spec.model_validate(spec_dict(name, model_spec("healthy", work, "v1"))))
        assert ep.url
        with Load(ep.url, work / "load.json", seconds=60 + args.rounds * 8 * args.bake, concurrency=8,
                  rps=args.rps, timeline=True) as load:
            load.wait_for(50)
            for i in range(args.rounds):
                before = load.read()
                spec = Spec.model_validate(spec_dict(
                    name, model_spec("healthy", work, f"v{i + 2}"),
                    strategy=canary(10, 50, 100, bake_s=args.bake), gates=GATES))
                t0 = time.time()
                out = deployer.apply(spec)
                took = time.time() - t0
                assert out.last is not None and out.last.outcome == "deployed", out.last
                time.sleep(0.5)
                after = load.read()
                rounds.append({
                    "release": out.last.release, "seconds": took,
                    "failed": after["failed"] - before["failed"],
                    "requests": after["requests"] - before["requests"],
                })
            data = load.stop()
        deployer.destroy(name)
    finally:
        left = teardown(home)
        if left:
            print(f"warning: killed leftover processes {sorted(left)}")
        shutil.rmtree(work, ignore_errors=True)

    floor = 3 * args.bake
    print(f"canary 10/50/100 with {args.bake:g} s bakes and 2 metric gates, under {args.rps:g} req/s "
          f"from a second process")
    print(f"{'release':<8} {'rollout':>9} {'vs bakes':>9} {'requests':>9} {'failed':>7}")
    for r in rounds:
        print(f"{r['release']:<8} {r['seconds']:>8.2f}s {r['seconds'] / floor:>8.2f}x {r['requests']:>9} "
              f"{r['failed']:>7}")
    med = statistics.median(r["seconds"] for r in rounds)
    print(f"median rollout {med:.2f} s for {floor:g} s of bakes ({med / floor:.2f}x); "
          f"whole run: {data['requests']} requests, {data['failed']} failed, "
          f"failures by release {failures_by_release(data)}, transport errors {data['transport_errors']}")
    print(f"goal (0 failed requests): {'met' if data['failed'] == 0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
