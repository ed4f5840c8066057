"""The model server: a raw ASGI app (no framework on the hot path).

Routes::

    POST /predict        body: a JSON list of rows, or {"instances": [...]}
                         reply: {"predictions": [...], "release": "r0002"}
    POST /invocations    SageMaker container contract alias of /predict
    GET  /health         liveness (200 while the process serves)
    GET  /ping           SageMaker alias of /ready
    GET  /ready          200 when a release with weight > 0 is loaded, else 503
    GET  /metrics        JSON per release: requests, errors, latency histogram, p50/p99
                         (?window=SECONDS, default all-time; ?format=prometheus for Prometheus text)

``X-Deployer-Release: <id>`` sends a prediction to that release directly, whatever its weight
(404 when it is not loaded). Without it a release is drawn per request from the traffic split.
With a token configured every route except /health, /ping and /ready needs
``Authorization: Bearer <token>`` (401 otherwise). Errors are JSON: ``{"error": "...", "message": "..."}``;
a model exception is a 500 counted as an error of that release.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson

from deployer.serving.metrics import BOUNDS_MS, MetricsRecorder, aggregate, read_snapshots
from deployer.serving.routing import Routing

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; version=0.0.4")
_OPTS = orjson.OPT_SERIALIZE_NUMPY
_PUBLIC = frozenset({"/health", "/ping", "/ready"})
_PREDICT = frozenset({"/predict", "/invocations"})


def _default(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:
        return tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


class ServingApp:
    """ASGI callable serving the releases of ``routing``.

    ``routing`` may be replaced at any time (one attribute assignment); requests in flight keep
    the table they started with. ``metrics_dir``, when given, is where every worker of the same
    endpoint flushes its metrics, so ``/metrics`` answers for the whole endpoint.
    """

    def __init__(
        self,
        routing: Routing | None = None,
        *,
        token: str | None = None,
        recorder: MetricsRecorder | None = None,
        metrics_dir: Path | None = None,
    ) -> None:
        self.routing = routing or Routing()
        self.recorder = recorder or MetricsRecorder()
        self.metrics_dir = metrics_dir
        self.set_token(token)

    def set_token(self, token: str | None) -> None:
        self._auth = b"Bearer " + token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path in _PREDICT and scope["method"] == "POST":
                await self._predict(scope, receive, send)
            else:
                await self._other(path, scope, send)
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        target = None
        auth = None
        for name, value in scope["headers"]:
            if name == b"x-deployer-release":
                target = value.decode("latin-1")
            elif name == b"authorization":
                auth = value
        if self._auth is not None and (auth is None or not hmac.compare_digest(auth, self._auth)):
            await _reply(send, 401, _error("unauthorized", "send Authorization: Bearer <token>"))
            return
        msg = await receive()
        body = msg.get("body", b"")
        while msg.get("more_body"):
            msg = await receive()
            body += msg.get("body", b"")
        routing = self.routing
        if target is None:
            target = routing.pick()
            if target is None:
                await _reply(send, 503, _error("not_ready", "no release is serving traffic"))
                return
        model = routing.releases.get(target)
        if model is None:
            await _reply(send, 404, _error("unknown_release", f"release {target!r} is not loaded here"))
            return
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            await _reply(send, 400, _error("bad_json", f"request body is not JSON: {e}"))
            return
        if isinstance(data, dict):
            data = data.get("instances")
        if not isinstance(data, list):
            await _reply(send, 400, _error("bad_request", 'send a JSON list of rows or {"instances": [...]}'))
            return
        series = self.recorder.get(target)
        try:
            out = orjson.dumps({"predictions": model.predict(data), "release": target}, default=_default, option=_OPTS)
        except Exception as e:
            series.observe(time.time(), (time.perf_counter() - start) * 1000.0, True)
            await _reply(send, 500, _error("model_error", f"{type(e).__name__}: {e}"), target)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    _JSON,
                    (b"content-length", str(len(out)).encode()),
                    (b"x-deployer-release", target.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": out})
        series.observe(time.time(), (time.perf_counter() - start) * 1000.0, False)

    async def _other(self, path: str, scope: Scope, send: Send) -> None:
        method = scope["method"]
        if path == "/health" and method in ("GET", "HEAD"):
            await _reply(send, 200, b'{"status":"ok"}')
            return
        if path in ("/ready", "/ping") and method in ("GET", "HEAD"):
            routing = self.routing
            body = orjson.dumps({"ready": routing.ready, "releases": sorted(routing.releases), "live": routing.live()})
            await _reply(send, 200 if routing.ready else 503, body)
            return
        if self._auth is not None:
            auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if auth is None or not hmac.compare_digest(auth, self._auth):
                await _reply(send, 401, _error("unauthorized", "send Authorization: Bearer <token>"))
                return
        if path == "/metrics" and method == "GET":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            try:
                window = float(query["window"][0]) if "window" in query else None
            except ValueError:
                await _reply(send, 400, _error("bad_request", "window must be a number of seconds"))
                return
            if query.get("format", [""])[0] == "prometheus":
                await _reply(send, 200, self.prometheus().encode(), content_type=_TEXT)
            else:
                await _reply(send, 200, orjson.dumps(self.metrics(window)))
            return
        if path in _PREDICT:
            await _reply(send, 405, _error("method_not_allowed", f"use POST {path}"))
            return
        await _reply(send, 404, _error("not_found", f"no route {method} {path}"))

    def _snapshots(self) -> list[dict[str, object]]:
        if self.metrics_dir is None:
            return [self.recorder.snapshot()]
        self.recorder.flush()
        return read_snapshots(self.metrics_dir)

    def metrics(self, window_s: float | None = None) -> dict[str, Any]:
        """Per-release requests, errors and latency over ``window_s`` (None: since start)."""
        releases = {}
        for rid, agg in sorted(aggregate(self._snapshots(), window_s).items()):
            releases[rid] = {
                "requests": agg.requests,
                "errors": agg.errors,
                "p50_ms": agg.percentile(0.5),
                "p99_ms": agg.percentile(0.99),
                "latency_ms_buckets": {_le(b): n for b, n in zip(BOUNDS_MS, agg.hist, strict=True)},
            }
        return {"window_s": window_s, "releases": releases, "live": list(self.routing.live())}

    def prometheus(self) -> str:
        """All-time counters and latency histograms in the Prometheus text format."""
        lines = [
            "# HELP deployer_requests_total Prediction requests by release.",
            "# TYPE deployer_requests_total counter",
        ]
        aggs = sorted(aggregate(self._snapshots(), None).items())
        lines += [f'deployer_requests_total{{release="{r}"}} {a.requests}' for r, a in aggs]
        lines += [
            "# HELP deployer_errors_total Failed predictions by release.",
            "# TYPE deployer_errors_total counter",
        ]
        lines += [f'deployer_errors_total{{release="{r}"}} {a.errors}' for r, a in aggs]
        lines += [
            "# HELP deployer_request_duration_seconds Prediction latency by release.",
            "# TYPE deployer_request_duration_seconds histogram",
        ]
        for rid, agg in aggs:
            acc = 0
            for bound, n in zip(BOUNDS_MS, agg.hist, strict=True):
                acc += n
                le = "+Inf" if bound == float("inf") else repr(bound / 1000.0)
                lines.append(f'deployer_request_duration_seconds_bucket{{release="{rid}",le="{le}"}} {acc}')
            lines.append(f'deployer_request_duration_seconds_count{{release="{rid}"}} {agg.requests}')
        return "\n".join(lines) + "\n"


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"error": code, "message": message})


async def _reply(
    send: Send,
    status: int,
    body: bytes,
    release: str | None = None,
    content_type: tuple[bytes, bytes] = _JSON,
) -> None:
    headers = [content_type, (b"content-length", str(len(body)).encode())]
    if release is not None:
        headers.append((b"x-deployer-release", release.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
