"""A fake of the Azure Resource Manager API for Azure ML online endpoints (and the Azure Monitor bits the
provider uses), served over HTTP on 127.0.0.1 and reached through azure-core's transport, so the SDK's own
request building, long-running-operation polling and response parsing run.

Every request body is parsed with the SDK's generated REST models (``tests/azure/restcheck.py``): unknown or
missing required fields are a 400. Answers follow the REST reference's examples
(https://learn.microsoft.com/rest/api/azureml/online-endpoints/create-or-update,
https://learn.microsoft.com/rest/api/azureml/online-deployments/create-or-update). The documented rules
it enforces are cited where they are checked.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from amlscoring import ImageRunner, MetricStore, Runner
from azure.ai.ml._restclient.arm_ml_service import models as rest
from azure.mgmt.monitor import models as monitor_models
from restcheck import BodyError, check

ARM = "https://management.azure.com"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
WS_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices"
    r"/workspaces/(?P<ws>[^/]+)(?P<rest>/.*)?$",
    re.IGNORECASE,  # ARM paths are case-insensitive (azure-mgmt-monitor sends "resourcegroups")
)
OPS_RE = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.MachineLearningServices/locations/[^/]+/(?P<kind>mfeOperationsStatus|mfeOperationResults)/(?P<id>[^/]+)$",
    re.IGNORECASE,
)
AUTOSCALE_RE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Insights/autoscalesettings/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
ASSETS = {"models": rest.ModelVersion, "codes": rest.CodeVersion, "environments": rest.EnvironmentVersion}


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Lro:
    """An Azure-AsyncOperation: InProgress for ``polls`` status reads, then Succeeded (or Failed)."""

    key: tuple[str, ...]
    kind: str  # "put" | "delete"
    polls: int
    fail: str | None = None
    status: str = "InProgress"


@dataclass
class ArmFake:
    sub: str = "00000000-0000-0000-0000-000000000000"
    rg: str = "rg"
    ws: str = "ws"
    location: str = "eastus"
    lro_polls: int = 3
    """Status reads an endpoint or deployment operation stays InProgress (ARM operations take minutes)."""
    fetch: Any = None
    """``fetch(url) -> bytes`` reads a blob (the model and the scoring code) for scoring."""
    resources: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)
    lros: dict[str, Lro] = field(default_factory=dict)
    faults: list[int] = field(default_factory=list)
    """Statuses (429 / 503) answered to the next ARM requests instead of serving them."""
    fault_rate: float = 0.0
    fault_count: int = 0
    recorded: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    metrics: MetricStore = field(default_factory=MetricStore)
    fail_deployments: set[str] = field(default_factory=set)
    """Deployment names whose creation ends Failed (as when the container does not start)."""
    runners: dict[tuple[str, str], Runner | ImageRunner] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)
    """Image -> the build context ``deployer build`` wrote for it (pushed to a registry): runs for real."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    mirror_seen: dict[str, int] = field(default_factory=dict)

    # -- ids ------------------------------------------------------------------------------------
    @property
    def ws_id(self) -> str:
        return (
            f"/subscriptions/{self.sub}/resourceGroups/{self.rg}/providers/Microsoft.MachineLearningServices"
            f"/workspaces/{self.ws}"
        )

    def _rid(self, key: tuple[str, ...]) -> str:
        if key[0] == "endpoint":
            return f"{self.ws_id}/onlineEndpoints/{key[1]}"
        if key[0] == "deployment":
            return f"{self.ws_id}/onlineEndpoints/{key[1]}/deployments/{key[2]}"
        if key[0] == "autoscale":
            rg = f"/subscriptions/{self.sub}/resourceGroups/{self.rg}"
            return f"{rg}/providers/Microsoft.Insights/autoscalesettings/{key[1]}"
        return f"{self.ws_id}/{key[0]}/{key[1]}/versions/{key[2]}"

    # -- dispatch -------------------------------------------------------------------------------
    def handle(
        self, method: str, host: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if host.endswith(".inference.ml.azure.com"):
            return self.score(host.split(".", 1)[0], headers, body)
        self.calls.append(f"{method} {path}")
        if not headers.get("Authorization", "").startswith("Bearer "):
            return _json(401, {"error": {"code": "AuthenticationFailed", "message": "no bearer token"}})
        if "api-version" not in query:
            # every ARM call names its api-version:
            # https://learn.microsoft.com/azure/azure-resource-manager/management/resource-providers-and-types
            return _json(400, {"error": {"code": "MissingApiVersionParameter", "message": "api-version is required"}})
        with self.lock:
            if self.faults or (self.fault_rate and self.rng.random() < self.fault_rate):
                status = self.faults.pop(0) if self.faults else self.rng.choice([429, 503])
                self.fault_count += 1
                code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
                return _json(status, {"error": {"code": code, "message": "injected"}}, {"Retry-After": "0"})
            try:
                return self._route(method, path, query, body)
            except ArmError as e:
                return _json(e.status, {"error": {"code": e.code, "message": e.message}})
            except BodyError as e:
                return _json(400, {"error": {"code": "InvalidRequestContent", "message": str(e)}})

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path.lower().endswith("/providers/microsoft.insights/metrics"):
            self.recorded.add("arm:GET metrics")
            resource = path[: -len("/providers/Microsoft.Insights/metrics")]
            status, out = self.metrics.query(resource, query)
            return _json(status, out)
        if m := OPS_RE.match(path):
            self.recorded.add(f"arm:GET locations/{m['kind']}")
            return self._operation(m["id"], m["kind"])
        if m := AUTOSCALE_RE.match(path):
            self.recorded.add(f"arm:{method} autoscalesettings")
            return self._autoscale(method, m["name"], body)
        m = WS_RE.match(path)
        if not m or (m["sub"], m["rg"], m["ws"]) != (self.sub, self.rg, self.ws):
            raise ArmError(404, "ResourceNotFound", f"no workspace at {path}")
        parts = [urllib.parse.unquote(p) for p in (m["rest"] or "").strip("/").split("/") if p]
        kind = "/".join(p for i, p in enumerate(parts) if i % 2 == 0)
        self.recorded.add(f"arm:{method} {kind}")
        if kind == "onlineEndpoints":
            return self._endpoint(method, parts[1], body)
        if kind in ("onlineEndpoints/listKeys", "onlineEndpoints/token"):
            ep = self._get(("endpoint", parts[1]))
            if kind.endswith("listKeys"):
                return _json(200, {"primaryKey": ep["_key"], "secondaryKey": ep["_key"][::-1]})
            return _json(
                200, {"accessToken": ep["_key"], "tokenType": "Bearer", "expiryTimeUtc": int(time.time()) + 3600}
            )
        if kind == "onlineEndpoints/deployments" and len(parts) == 3:
            self._get(("endpoint", parts[1]))
            items = [self._view(k) for k in sorted(self.resources) if k[0] == "deployment" and k[1] == parts[1]]
            return _json(200, {"value": items})
        if kind == "onlineEndpoints/deployments":
            return self._deployment(method, parts[1], parts[3], body)
        if kind in ("models/versions", "codes/versions", "environments/versions") and len(parts) == 4:
            return self._asset(method, parts[0], parts[1], parts[3], body)
        raise ArmError(404, "ResourceNotFound", f"no route for {method} {path}")

    # -- endpoints ------------------------------------------------------------------------------
    def _endpoint(self, method: str, name: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        key = ("endpoint", name)
        if method == "GET":
            return _json(200, self._view(key))
        if method == "DELETE":
            if key not in self.resources:
                return 204, {}, b""
            return self._start(key, "delete", "Deleting")
        parsed = check(rest.OnlineEndpoint, _load(body))
        # https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas#azure-machine-learning-online-endpoints-and-batch-endpoints
        if not NAME_RE.fullmatch(name):
            raise ArmError(
                400, "BadArgument", "endpoint names are 3-32 letters, digits and hyphens, starting with a letter"
            )
        current = self.resources.get(key)
        self._not_busy(key)
        props = parsed.as_dict()["properties"]
        self._check_traffic(name, props.get("traffic") or {}, props.get("mirrorTraffic") or {})
        stored = {**_load(body), "_key": (current or {}).get("_key") or uuid.uuid4().hex}
        stored["properties"]["scoringUri"] = f"https://{name}.{self.location}.inference.ml.azure.com/score"
        stored["properties"]["swaggerUri"] = f"https://{name}.{self.location}.inference.ml.azure.com/swagger.json"
        self.resources[key] = stored
        return self._start(key, "put", "Updating" if current else "Creating", created=current is None)

    def _check_traffic(self, endpoint: str, traffic: dict[str, int], mirror: dict[str, int]) -> None:
        deployments = {k[2]: v for k, v in self.resources.items() if k[0] == "deployment" and k[1] == endpoint}
        for name in [*traffic, *mirror]:
            if name not in deployments:
                # traffic names deployments of the endpoint:
                # https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints
                raise ArmError(400, "BadArgument", f"deployment {name} does not exist on endpoint {endpoint}")
        live = {k: v for k, v in traffic.items() if v}
        # OnlineEndpointProperties.traffic: "Traffic values need to sum to 100" (REST reference)
        if live and sum(live.values()) != 100:
            raise ArmError(400, "BadArgument", f"traffic must sum to 100, got {sum(live.values())}")
        for name in live:
            if deployments[name]["properties"].get("provisioningState") not in ("Succeeded", "Updating", "Scaling"):
                raise ArmError(400, "BadArgument", f"deployment {name} is not ready for traffic")
        mirrored = {k: v for k, v in mirror.items() if v}
        # https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints#test-the-deployment-with-mirrored-traffic
        # (mirror at most 50% in all, to one deployment, never to a deployment that receives live traffic)
        if sum(mirrored.values()) > 50:
            raise ArmError(400, "BadArgument", f"mirror traffic must total at most 50, got {sum(mirrored.values())}")
        if len(mirrored) > 1:
            raise ArmError(400, "BadArgument", "traffic can be mirrored to one deployment only")
        both = set(mirrored) & set(live)
        if both:
            raise ArmError(400, "BadArgument", f"deployment {sorted(both)[0]} has live traffic and cannot be mirrored")

    # -- deployments ----------------------------------------------------------------------------
    def _deployment(self, method: str, endpoint: str, name: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        key = ("deployment", endpoint, name)
        if method == "GET":
            return _json(200, self._view(key))
        ep = self._get(("endpoint", endpoint))
        if method == "DELETE":
            if key not in self.resources:
                return 204, {}, b""
            props = ep["properties"]
            # https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints#remove-the-old-deployment
            # (a deployment is deleted after its traffic is set to 0)
            if (props.get("traffic") or {}).get(name) or (props.get("mirrorTraffic") or {}).get(name):
                raise ArmError(400, "BadArgument", f"deployment {name} still receives traffic; set it to 0 first")
            self._not_busy(key)
            return self._start(key, "delete", "Deleting")
        parsed = check(rest.OnlineDeployment, _load(body))
        if not NAME_RE.fullmatch(name):
            raise ArmError(400, "BadArgument", "deployment names are 3-32 letters, digits and hyphens")
        if ep["properties"].get("provisioningState") in ("Creating", "Deleting"):
            raise ArmError(409, "Conflict", f"endpoint {endpoint} is {ep['properties']['provisioningState']}")
        self._not_busy(key)
        props = parsed.as_dict()["properties"]
        for ref in (
            props.get("model"),
            props.get("environmentId"),
            (props.get("codeConfiguration") or {}).get("codeId"),
        ):
            if ref and not self._asset_exists(ref):
                raise ArmError(400, "BadArgument", f"asset {ref} does not exist in workspace {self.ws}")
        if not props.get("codeConfiguration") and props.get("environmentId"):
            # without a scoring script the environment is a custom container that names its routes:
            # https://learn.microsoft.com/azure/machine-learning/how-to-deploy-custom-container
            env = self._asset_by_id(props["environmentId"])["properties"]
            if not env.get("inferenceConfig"):
                raise ArmError(
                    400, "BadArgument", "a deployment without code needs an environment with inferenceConfig"
                )
        current = self.resources.get(key)
        self.resources[key] = _load(body)
        self.runners.pop((endpoint, name), None)
        fail = "the container did not become ready" if name in self.fail_deployments else None
        return self._start(key, "put", "Updating" if current else "Creating", created=current is None, fail=fail)

    # -- assets ---------------------------------------------------------------------------------
    def _asset(self, method: str, kind: str, name: str, version: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        key = (kind, name, version)
        if method == "GET":
            return _json(200, self._view(key))
        check(ASSETS[kind], _load(body))
        data = _load(body)
        current = self.resources.get(key)
        uri_field = {"models": "modelUri", "codes": "codeUri", "environments": "image"}[kind]
        if current is not None and current["properties"].get(uri_field) != data["properties"].get(uri_field):
            # registered asset versions are immutable: https://learn.microsoft.com/azure/machine-learning/concept-model-management-and-deployment
            raise ArmError(409, "Conflict", f"{kind} {name}:{version} exists with another path")
        data["properties"]["provisioningState"] = "Succeeded"
        self.resources[key] = data
        return _json(201 if current is None else 200, self._view(key))

    def _asset_exists(self, ref: str) -> bool:
        m = re.search(r"/(models|codes|environments)/([^/]+)/versions/([^/]+)$", ref)
        return bool(m) and (m[1], m[2], m[3]) in self.resources if m else False

    # -- autoscale ------------------------------------------------------------------------------
    def _autoscale(self, method: str, name: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        key = ("autoscale", name)
        if method == "GET":
            return _json(200, self._view(key))
        if method == "DELETE":
            if self.resources.pop(key, None) is None:
                return 204, {}, b""
            return 200, {}, b""
        check(monitor_models.AutoscaleSettingResource, _load(body))
        data = _load(body)
        props = data["properties"]
        # minimum <= default <= maximum:
        # https://learn.microsoft.com/azure/azure-monitor/autoscale/autoscale-understanding-settings
        for p in props["profiles"]:
            c = p["capacity"]
            if not int(c["minimum"]) <= int(c["default"]) <= int(c["maximum"]):
                raise ArmError(400, "BadRequest", "autoscale capacity must satisfy minimum <= default <= maximum")
        target = props.get("targetResourceUri", "")
        m = re.search(r"/onlineEndpoints/([^/]+)/deployments/([^/]+)$", target)
        if not m or ("deployment", m[1], m[2]) not in self.resources:
            raise ArmError(400, "BadRequest", f"target resource {target} does not exist")
        self.resources[key] = data
        return _json(200, self._view(key))

    # -- long-running operations ----------------------------------------------------------------
    def _start(
        self, key: tuple[str, ...], kind: str, state: str, created: bool = False, fail: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Accept a PUT (201/200 + Azure-AsyncOperation) or DELETE (202 + Location), per
        https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations."""
        op_id = uuid.uuid4().hex
        self.lros[op_id] = Lro(key, kind, self.lro_polls, fail)
        self.resources[key].setdefault("properties", {})["provisioningState"] = state
        base = f"{ARM}/subscriptions/{self.sub}/providers/Microsoft.MachineLearningServices/locations/{self.location}"
        headers = {
            "Azure-AsyncOperation": f"{base}/mfeOperationsStatus/{op_id}?api-version=2023-04-01-preview",
            "Retry-After": "1",
        }
        if kind == "delete":
            headers["Location"] = f"{base}/mfeOperationResults/{op_id}?api-version=2023-04-01-preview"
            return 202, headers, b""
        status, _, out = _json(201 if created else 200, self._view(key))
        return status, headers, out

    def _tick(self, op: Lro) -> None:
        if op.status != "InProgress":
            return
        op.polls -= 1
        if op.polls > 0:
            return
        if op.kind == "delete":
            self.resources.pop(op.key, None)
            if op.key[0] == "endpoint":
                for k in [k for k in self.resources if k[0] == "deployment" and k[1] == op.key[1]]:
                    self.resources.pop(k)
            op.status = "Succeeded"
            return
        res = self.resources.get(op.key)
        op.status = "Failed" if op.fail else "Succeeded"
        if res is not None:
            res["properties"]["provisioningState"] = op.status

    def _operation(self, op_id: str, kind: str) -> tuple[int, dict[str, str], bytes]:
        op = self.lros.get(op_id)
        if op is None:
            raise ArmError(404, "ResourceNotFound", f"operation {op_id} not found")
        self._tick(op)
        if kind == "mfeOperationResults":
            return (202, {"Retry-After": "1"}, b"") if op.status == "InProgress" else (200, {}, b"")
        out: dict[str, Any] = {"id": op_id, "name": op_id, "status": op.status}
        if op.status == "Failed":
            out["error"] = {"code": "DeploymentFailed", "message": op.fail}
        return _json(200, out)

    def _not_busy(self, key: tuple[str, ...]) -> None:
        for op in self.lros.values():
            if op.key == key and op.status == "InProgress":
                # ARM refuses a second write while one is running on the resource
                raise ArmError(409, "Conflict", f"an operation is in progress on {'/'.join(key[1:])}")

    # -- reads ----------------------------------------------------------------------------------
    def _get(self, key: tuple[str, ...]) -> dict[str, Any]:
        res = self.resources.get(key)
        if res is None:
            raise ArmError(404, "ResourceNotFound", f"{key[0]} {'/'.join(key[1:])} not found")
        return res

    def _view(self, key: tuple[str, ...]) -> dict[str, Any]:
        """The resource as GET answers it (the examples' shape: id, name, type, location, systemData)."""
        for op in list(self.lros.values()):
            if op.key == key:
                self._tick(op)  # a GET of a resource under change counts as one poll of it
        res = self._get(key)
        out = {k: v for k, v in res.items() if not k.startswith("_")}
        types = {
            "endpoint": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
            "deployment": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
            "autoscale": "Microsoft.Insights/autoscaleSettings",
        }
        out.update(
            id=self._rid(key),
            name=key[-1] if key[0] not in ASSETS else key[2],
            type=types.get(key[0], f"Microsoft.MachineLearningServices/workspaces/{key[0]}/versions"),
            systemData={"createdBy": "fake", "createdByType": "User", "createdAt": "2026-01-01T00:00:00Z"},
        )
        if key[0] in ("endpoint", "deployment"):
            out.setdefault("location", self.location)
        return out

    # -- data plane -----------------------------------------------------------------------------
    def score(self, endpoint: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Route by traffic (or the ``azureml-model-deployment`` header), copy to the mirrored deployment,
        answer with the live deployment's result only."""
        self.recorded.add("score:POST score")
        with self.lock:
            ep = self.resources.get(("endpoint", endpoint))
            if ep is None:
                return _json(404, {"message": f"endpoint {endpoint} not found"})
            if headers.get("Authorization") != f"Bearer {ep['_key']}":
                return _json(401, {"message": "invalid key"})
            props = ep["properties"]
            target = headers.get("azureml-model-deployment")
            traffic = {k: v for k, v in (props.get("traffic") or {}).items() if v}
            if target is None:
                if not traffic:
                    return _json(424, {"message": "no deployment receives traffic"})
                target = self.rng.choices(list(traffic), weights=list(traffic.values()))[0]
            elif ("deployment", endpoint, target) not in self.resources:
                return _json(404, {"message": f"deployment {target} not found"})
            mirrors = []
            if headers.get("azureml-model-deployment") is None:
                for name, pct in (props.get("mirrorTraffic") or {}).items():
                    n = self.mirror_seen.get(name, 0)
                    self.mirror_seen[name] = n + 1
                    if (n + 1) * pct // 100 > n * pct // 100:
                        mirrors.append(name)
        status, out = self._run(endpoint, target, body)
        for name in mirrors:  # the copy's answer (or error) never reaches the caller
            self._run(endpoint, name, body)
        return status, {"Content-Type": "application/json", "azureml-model-deployment": target}, out

    def _run(self, endpoint: str, deployment: str, body: bytes) -> tuple[int, bytes]:
        start = time.perf_counter()
        runner = self._runner(endpoint, deployment)
        status, out = runner.score(body)
        self.metrics.record(self._rid(("endpoint", endpoint)), deployment, status, (time.perf_counter() - start) * 1000)
        return status, out

    def _runner(self, endpoint: str, deployment: str) -> Runner:
        with self.lock:
            runner = self.runners.get((endpoint, deployment))
            if runner is None:
                props = self.resources[("deployment", endpoint, deployment)]["properties"]
                model = self._asset_by_id(props["model"])["properties"]["modelUri"]
                if not props.get("codeConfiguration"):
                    env = self._asset_by_id(props["environmentId"])["properties"]
                    variables = dict(props.get("environmentVariables") or {})
                    context = self.images[env["image"]]
                    runner = ImageRunner(deployment, model, self.fetch, context, variables, env["inferenceConfig"])
                else:
                    code = self._asset_by_id(props["codeConfiguration"]["codeId"])["properties"]["codeUri"]
                    runner = Runner(deployment, model, code, self.fetch)
                self.runners[(endpoint, deployment)] = runner
            return runner

    def _asset_by_id(self, ref: str) -> dict[str, Any]:
        m = re.search(r"/(models|codes|environments)/([^/]+)/versions/([^/]+)$", ref)
        assert m is not None
        return self.resources[(m[1], m[2], m[3])]

    def close(self) -> None:
        for r in self.runners.values():
            r.close()
        self.runners.clear()


def _load(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except ValueError as e:
        raise BodyError(f"$: not JSON: {e}") from e


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


class Server:
    """The fake on 127.0.0.1 with a free port; requests arrive through the provider's forwarding transport."""

    def __init__(self, fake: ArmFake) -> None:
        self.fake = fake
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
                host = self.headers.get("X-Forwarded-Host", "management.azure.com")
                status, headers, out = outer.fake.handle(self.command, host, url.path, query, self.headers, body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.fake.close()
