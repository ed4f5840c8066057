"""The OpenAPI 3.1 document of the model server's routes, served at ``GET /openapi.json``.

It is the contract clients and API testers (schemathesis in our tests) hold the server to: every
documented request gets one of the documented status codes, and no request gets a 5xx other than a
model's own failure (500) or a timeout (504). The row schema is the live release's input contract
when it has one (numeric rows of its width, nulls only where the model takes them), else any row.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from deployer.serving.inputs import Contract

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}
_VALUE = {"type": ["number", "string", "boolean", "null"]}


def _row(contract: Contract | None) -> dict[str, Any]:
    """The schema of one row under ``contract`` (any row when there is none)."""
    if contract is None or contract.passthrough:
        return {}
    if not contract.numeric:
        value: dict[str, Any] = _VALUE
    else:
        value = {"type": ["number", "null"] if contract.allow_nan else "number"}
    values: dict[str, Any] = {"type": "array", "items": value, "description": "the features of one row, in order"}
    if contract.width is not None:
        values.update(minItems=contract.width, maxItems=contract.width)
    if not contract.names:
        return values
    record = {
        "type": "object",
        "properties": {n: value for n in contract.names},
        "required": list(contract.names),
        "description": "features by name",
    }
    return {"oneOf": [values, record]}


def _body(contract: Contract | None) -> dict[str, Any]:
    rows = {"type": "array", "items": _row(contract), "minItems": 1}
    return {"oneOf": [rows, {"type": "object", "required": ["instances"], "properties": {"instances": rows}}]}


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


def _predict_op(summary: str, contract: Contract | None) -> dict[str, Any]:
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
        "requestBody": {"required": True, "content": {"application/json": {"schema": _body(contract)}}},
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


@lru_cache(maxsize=16)
def document(contract: Contract | None = None) -> bytes:
    """The OpenAPI document as JSON bytes, its rows described by ``contract`` (cached per contract)."""
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
            "/predict": {"post": _predict_op("predict rows with a release drawn from the traffic split", contract)},
            "/invocations": {"post": _predict_op("SageMaker container contract alias of /predict", contract)},
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
