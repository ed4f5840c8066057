"""Rollback under load: seconds from `deployer.rollback` to 100% of traffic on v1, and failed requests.

    warm:  v2 deployed with ``strategy.keep_previous_warm: true``: v1 still runs at 0%, a rollback is
           one route (the goal: <= 1 s to 100% on v1, 0 failed requests)
    cold:  the same with ``keep_previous_warm: false`` (the default): v1 was retired, the rollback
           redeploys it from its stored artifact first (the baseline, measured in the same run)

Each round rolls v2 -> v1 while ``tests/local/load.py`` (a second process, 127.0.0.1) sends
``--rps`` requests per second and records every request's send time and the release that answered.
"Time to 100% on v1" is measured from the rollback call to the send time of the first request after
which no request was answered by v2; it is an upper bound (one request interval of resolution).
Between rounds v2 is made live again (``rollback --to`` it when warm, a redeploy of its spec when cold).

Usage: python benchmarks/rollback.py [--rounds 5] [--rps 400]
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

from local.load import Load  # noqa: E402
from local.models import model_spec, spec_dict, teardown  # noqa: E402


def cutover(data: dict[str, Any], t0: float, old: str) -> tuple[float, int]:
    """(seconds from ``t0`` until every later request was answered by ``old``, failed requests after t0 - 1 s)."""
    last_other = t0
    for sent, _, status, release in data["timeline"]:
        if sent >= t0 - 1.0 and (release != old or status // 100 != 2):
            last_other = max(last_other, sent)
    after = sorted(s for s, _, st, r in data["timeline"] if s > last_other and r == old)
    switched = (after[0] if after else last_other) - t0
    failed = sum(1 for s, _, st, _ in data["timeline"] if s >= t0 - 1.0 and st // 100 != 2)
    return max(0.0, switched), failed


def run(mode: str, work: Path, rounds: int, rps: float) -> dict[str, Any]:
    import deployer

    name = f"bench-{mode}"
    warm = mode == "warm"
    v1 = spec_dict(name, model_spec("healthy", work, f"{mode}-v1"))
    v2 = spec_dict(name, model_spec("healthy", work, f"{mode}-v2"),
                   strategy={"type": "all-at-once", "keep_previous_warm": warm})
    from deployer.spec import Spec

    deployer.apply(Spec.model_validate(v1))
    ep = deployer.apply(Spec.model_validate(v2))
    url = ep.url
    assert url
    times: list[float] = []
    commands: list[float] = []
    window_failures = 0
    with Load(url, work / f"load-{mode}.json", seconds=120, concurrency=8, rps=rps, timeline=True) as load:
        load.wait_for(50)
        for _ in range(rounds):
            time.sleep(1.0)
            live = deployer.status(name).live
            t0 = time.time()
            out = deployer.rollback(name, to="r0001")
            commands.append(time.time() - t0)
            assert out.release == "r0001", out
            time.sleep(1.0)
            data = load.read()
            while not data.get("timeline") or data["timeline"][-1][0] < t0 + 0.9:
                time.sleep(0.1)
                data = load.read()
            switched, failed = cutover(data, t0, "r0001")
            times.append(switched)
            window_failures += failed
            # make v2 live again for the next round (cold: a new release of v2, and v1 retired again)
            if warm:
                deployer.rollback(name, to=live)
            else:
                deployer.apply(Spec.model_validate(v2))
        data = load.stop()
    deployer.destroy(name)
    return {"mode": mode, "switch_s": times, "command_s": commands, "failed_near_rollbacks": window_failures,
            "failed": data["failed"], "requests": data["requests"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rps", type=float, default=400)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deployer-bench-rollback-"))
    home = work / "home"
    os.environ["DEPLOYER_HOME"] = str(home)
    os.environ.pop("DEPLOYER_LOCAL_TOKEN", None)
    results = []
    try:
        for mode in ("warm", "cold"):
            results.append(run(mode, work, args.rounds, args.rps))
    finally:
        left = teardown(home)
        if left:
            print(f"warning: killed leftover processes {sorted(left)}")
        shutil.rmtree(work, ignore_errors=True)
    print(f"rollback under load ({args.rps:g} req/s from a second process, {args.rounds} rounds each)")
    print(f"{'mode':<6} {'to 100% v1 median':>18} {'max':>7} {'command median':>15} {'failed':>7} {'requests':>9}")
    for r in results:
        print(f"{r['mode']:<6} {statistics.median(r['switch_s']):>17.3f}s {max(r['switch_s']):>6.3f}s "
              f"{statistics.median(r['command_s']):>14.3f}s {r['failed']:>7} {r['requests']:>9}")
    print("(failed: non-2xx answers and transport errors over the whole run, roll-forwards included)")
    warm, cold = results
    ratio = statistics.median(cold["switch_s"]) / max(statistics.median(warm["switch_s"]), 1e-6)
    print(f"warm rollback is {ratio:.1f}x faster than cold (redeploy) rollback")
    ok = max(warm["switch_s"]) <= 1.0 and warm["failed"] == 0
    print(f"goal (warm: <= 1 s to 100% on v1, 0 failed requests): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
