"""Baseline (a): a minimal, fast Starlette + orjson app on uvicorn, predicting on a numpy array.

Run: MODEL_PATH=model.joblib uvicorn benchmarks._baselines.starlette_app:app --workers 2
"""

import os

import joblib
import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

model = joblib.load(os.environ["MODEL_PATH"])


async def predict(request: Request) -> Response:
    rows = orjson.loads(await request.body())
    out = model.predict(np.asarray(rows))
    return Response(
        orjson.dumps({"predictions": out}, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


async def ready(request: Request) -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/ready", ready)])
