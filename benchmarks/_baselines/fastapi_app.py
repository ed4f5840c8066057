"""Baseline (b): the tutorial-style FastAPI + pydantic model server.

Run: MODEL_PATH=model.joblib uvicorn benchmarks._baselines.fastapi_app:app --workers 2
"""

import os

import joblib
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
model = joblib.load(os.environ["MODEL_PATH"])


class Features(BaseModel):
    features: list[list[float]]


class Prediction(BaseModel):
    predictions: list[int]


@app.post("/predict", response_model=Prediction)
def predict(item: Features) -> Prediction:
    return Prediction(predictions=model.predict(item.features).tolist())


@app.get("/ready")
def ready() -> dict:
    return {"ready": True}
