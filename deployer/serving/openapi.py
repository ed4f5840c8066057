"""The OpenAPI 3.1 document of the model server's routes, served at ``GET /openapi.json``.

It is the contract clients and API testers (schemathesis in our tests) hold the server to: every
documented request gets one of the documented status codes, and no request gets a 5xx other than a
model's own failure (500) or a timeout (504).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}
_VALUE = {"type": ["number", "string", "boolean", "null"]}
_ROW = {
    "oneOf": [
        {"type": "array", "items": _VALUE, "description": "the features of one row, in the model's order"},
        {"type": "object", "additionalProperties": _VALUE, "description": "features by name"},
    ]
}
_ROWS = {"type": "array", "items": _ROW, "minItems": 1}
_PREDICT_BODY = {"oneOf": [_ROWS, {"type": "object", "required": ["instances"], "properties": {"instances": _ROWS}}]}
_PREDICTION = {
    "type": "object",
    "required": ["predictions", "release"],
    "properties": {"predictions": {"type": "array"}, "release": {"type": "string"}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "the body is not JSON, or not a list of rows",
        401: "a token is configured and the request lacks it",
        404: "X-Deployer-Release names a release that is not loaded",
        413: "the body is over the release's max_body_mb",
        422: "rows the model cannot take: empty, ragged, wrong width, strings or nulls where it needs numbers",
        500: "the model raised (counted as an error of the release)",
        503: "no release carries traffic",
        504: "no prediction within the release's timeout_s (counted as an error of the release)",
    }
    return {str(c): _json(_ERROR, text[c]) for c in codes}


def _predict_op(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [
            {
                "name": "X-Deployer-Release",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^r[0-9]{4,}$"},
                "description": "send the request to this release whatever its weight",
            }
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _PREDICT_BODY}}},
        "responses": {
            "200": _json(_PREDICTION, "one prediction per row"),
            **_errors(400, 401, 404, 413, 422, 500, 503, 504),
        },
    }


def _ready() -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "ready": {"type": "boolean"},
            "releases": {"type": "array", "items": {"type": "string"}},
            "live": {"type": "array", "items": {"type": "string"}},
        },
    }
    return {
        "summary": "readiness: a release carries traffic",
        "responses": {"200": _json(schema, "ready"), "503": _json(schema, "no release carries traffic")},
    }


@cache
def document() -> bytes:
    """The OpenAPI document as JSON bytes (built once)."""
    metrics_params = [
        {"name": "window", "in": "query", "required": False, "schema": {"type": "number", "exclusiveMinimum": 0}},
        {
            "name": "format",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["json", "prometheus"]},
        },
    ]
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "deployer model server", "version": "1"},
        "paths": {
            "/predict": {"post": _predict_op("predict rows with a release drawn from the traffic split")},
            "/invocations": {"post": _predict_op("SageMaker container contract alias of /predict")},
            "/health": {"get": {"summary": "liveness", "responses": {"200": _json({"type": "object"}, "alive")}}},
            "/ready": {"get": _ready()},
            "/ping": {"get": _ready()},
            "/metrics": {
                "get": {
                    "summary": "per-release requests, errors, rejected, latency and batch sizes",
                    "parameters": metrics_params,
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"application/json": {"schema": {"type": "object"}}, "text/plain": {}},
                        },
                        **_errors(400, 401),
                    },
                }
            },
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": _json({"type": "object"}, "")}}},
        },
    }
    return orjson.dumps(doc)
