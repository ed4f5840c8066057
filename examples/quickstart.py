"""Quickstart: train a small model, deploy it on this machine, and ask it for a prediction over HTTP.

    pip install uv && uv run python examples/quickstart.py

The endpoint keeps serving after this script exits; `uv run deployer destroy quickstart` stops it.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import deployer

HERE = Path(__file__).resolve().parent
MODEL = HERE / "model" / "quickstart.joblib"
SPEC = HERE.parent / "configs" / "quickstart.yaml"


def main() -> int:
    x, y = load_iris(return_X_y=True)
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), MODEL)

    ep = deployer.apply(SPEC, on_event=lambda e: print(f"  {e.kind}: {getattr(e, 'detail', '')}", file=sys.stderr)
                        if e.kind == "step.done" else None)
    url = ep.url
    row = [5.1, 3.5, 1.4, 0.2]
    req = urllib.request.Request(f"{url}/predict", data=json.dumps([row]).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    print(f"endpoint:   {url}")
    print(f"request:    POST {url}/predict {json.dumps([row])}")
    print(f"prediction: {answer['predictions']} (release {answer['release']})")
    print("stop it with: uv run deployer destroy quickstart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
