"""The Open Inference Protocol (v2) REST routes of the serving app, other than inference itself.

The protocol (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/, also
Triton's and MLServer's HTTP API) names a model in each path. The serving app answers for its one
model name (``ServingApp.model_name``, ``"model"`` unless the runtime is told otherwise) and for
each loaded release id: ``/v2/models/<name>`` is the endpoint (a release drawn from the traffic
split), ``/v2/models/<release>`` or ``/v2/models/<name>/versions/<release>`` one release directly.

Routes answered here::

    GET /v2                                server metadata
    GET /v2/health/live                    200 while the process serves
    GET /v2/health/ready                   200 when a release carries traffic, else 503
    GET /v2/models/{name}[/versions/{v}]   model metadata (inputs, outputs, versions = release ids)
    GET /v2/models/{name}[/versions/{v}]/ready

``POST /v2/models/{name}[/versions/{v}]/infer`` runs in the app's prediction path (same lanes,
limits and metrics as ``/predict``); its body is decoded and its answer encoded by
:mod:`deployer.serving.codec`.
"""

from __future__ import annotations

from typing import Any

import orjson

from deployer.serving.loader import contract_of
from deployer.serving.routing import Routing

PREFIX = "/v2/models/"
PUBLIC = frozenset({"/v2", "/v2/health/live", "/v2/health/ready"})


def infer_target(path: str) -> str | None:
    """``name[/versions/v]`` of an ``.../infer`` path, or None when ``path`` is not one."""
    if path.startswith(PREFIX) and path.endswith("/infer"):
        return path[len(PREFIX) : -len("/infer")]
    return None


def resolve(spec: str, model_name: str, routing: Routing) -> tuple[str, str | None] | None:
    """(model name as asked, release or None for the traffic split) of ``name[/versions/v]``; None if unknown."""
    name, _, version = spec.partition("/versions/")
    if name == model_name:
        return name, version or None
    if name in routing.releases and (not version or version == name):
        return name, name
    return None


def answer(path: str, routing: Routing, model_name: str, server: str) -> tuple[int, bytes] | None:
    """(status, JSON body) of a GET to an OIP route other than inference, or None when not one."""
    if path == "/v2":
        return 200, orjson.dumps({"name": "deployer", "version": server, "extensions": []})
    if path == "/v2/health/live":
        return 200, b'{"live":true}'
    if path == "/v2/health/ready":
        return (200 if routing.ready else 503), orjson.dumps({"ready": routing.ready})
    if not path.startswith(PREFIX):
        return None
    spec = path[len(PREFIX) :]
    want_ready = spec.endswith("/ready")
    if want_ready:
        spec = spec[: -len("/ready")]
    found = resolve(spec, model_name, routing)
    if found is None:
        known = ", ".join([model_name, *sorted(routing.releases)])
        body = {"error": f"unknown model {spec!r}; this server serves {known}"}
        return 404, orjson.dumps(body)
    name, release = found
    ready = routing.ready if release is None else release in routing.releases
    if want_ready:
        return (200 if ready else 503), orjson.dumps({"name": name, "ready": ready})
    return 200, orjson.dumps(metadata(name, release, routing))


def metadata(name: str, release: str | None, routing: Routing) -> dict[str, Any]:
    """Model metadata: the input tensor the release(s) take and the one output they give."""
    ids = [release] if release is not None else list(routing.live())
    contracts = {contract_of(routing.releases[r]) for r in ids if r in routing.releases}
    contract = contracts.pop() if len(contracts) == 1 else None
    if contract is not None and not contract.passthrough:
        datatype = "FP64" if contract.numeric else "BYTES"
        inputs = [{"name": "input", "datatype": datatype, "shape": [-1, contract.width or -1]}]
    else:
        inputs = [{"name": "input", "datatype": "BYTES", "shape": [-1]}]
    return {
        "name": name,
        "versions": ids,
        "platform": "deployer",
        "inputs": inputs,
        "outputs": [{"name": "predictions", "datatype": "FP64", "shape": [-1]}],
    }
