"""The model server: a raw ASGI app (no framework on the hot path).

Routes (described by the OpenAPI document at ``GET /openapi.json``, see :mod:`deployer.serving.openapi`)::

    POST /predict        body: a JSON list of rows, or {"instances": [...]}
                         reply: {"predictions": [...], "release": "r0002"}
    POST /invocations    SageMaker container contract alias of /predict
    GET  /health         liveness (200 while the process serves)
    GET  /ping           SageMaker alias of /ready
    GET  /ready          200 when a release with weight > 0 is loaded, else 503
    GET  /metrics        JSON per release: requests, errors, rejected, latency histogram, p50/p99,
                         batch sizes (?window=SECONDS, default all-time; ?format=prometheus)
    GET  /openapi.json   the OpenAPI 3.1 document of these routes
    /v2/...              the Open Inference Protocol v2 REST routes (see :mod:`deployer.serving.oip`)

A body sent as ``text/csv`` is one row a line. Bodies become rows in :func:`deployer.serving.codec.decode`
and answers are written by :mod:`deployer.serving.codec`, the code every contract and every generated
cloud script shares. ``aliases`` maps the routes a cloud's container contract names (Vertex AI's
``AIP_PREDICT_ROUTE``, Azure ML's scoring route, ...) to these, see :mod:`deployer.serving.contracts`.

``X-Deployer-Release: <id>`` sends a prediction to that release directly, whatever its weight
(404 when it is not loaded). Without it a release is drawn per request from the traffic split, and
the request is copied to each mirrored release with its mirror percentage (after the caller has
its answer; a mirror's answers and errors only feed its own metrics).
With a token configured every route except /health, /ping, /ready and /openapi.json needs
``Authorization: Bearer <token>`` (401 otherwise). Errors are JSON: ``{"error": "...", "message": "..."}``.

Predictions never run on the event loop: they go to the release's :class:`~deployer.serving.batching.Lane`
(a thread pool, adaptive micro-batches). Status codes and what they count in ``/metrics``:

* 400 (not JSON, not a list of rows), 413 (body over ``max_body_mb``), 422 (rows the model cannot
  take: empty, ragged, wrong width, strings, nulls): the caller's error, counted as ``rejected``;
* 500 (the model raised) and 504 (no answer within ``timeout_s``): the release's ``errors``;
* 200: a prediction. ``requests`` counts 200, 500 and 504.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson

from deployer import __version__
from deployer.serving import oip
from deployer.serving.batching import Lane
from deployer.serving.codec import csv_rows, infer_body, predictions_body
from deployer.serving.inputs import BadInput, Contract, rows_of
from deployer.serving.loader import Predictor, contract_of
from deployer.serving.metrics import BOUNDS_MS, MetricsRecorder, aggregate, read_snapshots
from deployer.serving.openapi import document
from deployer.serving.routing import Routing
from deployer.serving.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; version=0.0.4")
_OPTS = orjson.OPT_SERIALIZE_NUMPY
_PUBLIC = frozenset({"/health", "/ping", "/ready", "/openapi.json"})
_PREDICT = frozenset({"/predict", "/invocations"})
_CSV = b"text/csv"

THREADS = 4
"""Prediction threads per worker (each release runs at most ``LANE_CONCURRENCY`` batches at once)."""
LANE_CONCURRENCY = 2
SHADOW_CAPACITY_ROWS = 256
"""Rows of mirrored copies a worker queues per release; further copies are dropped."""
DRAIN_LIMIT = 256 * 1024 * 1024
"""Bytes of an oversized body read and discarded so the 413 reaches the client; beyond, the connection closes."""


def _default(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:
        return tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _as_is(predictions: Any) -> Any:
    return predictions


class _TooLarge(Exception):
    pass


class _ShadowDone:
    """Records a mirrored copy's outcome in its release's metrics (an answer later than the timeout is an error)."""

    def __init__(self, series: Any, timeout_s: float) -> None:
        self.series = series
        self.limit_ms = timeout_s * 1000.0
        self.t0 = time.perf_counter()

    def __call__(self, future: asyncio.Future[Any]) -> None:
        ms = (time.perf_counter() - self.t0) * 1000.0
        failed = future.cancelled() or future.exception() is not None
        self.series.observe(time.time(), ms, failed or ms > self.limit_ms)


class ServingApp:
    """ASGI callable serving the releases of ``routing``.

    ``routing`` may be replaced at any time (one attribute assignment); requests in flight keep
    the table they started with. ``metrics_dir``, when given, is where every worker of the same
    endpoint flushes its metrics, so ``/metrics`` answers for the whole endpoint. ``threads`` bounds
    the prediction threads; mirrored copies run on one more thread of their own.
    """

    def __init__(
        self,
        routing: Routing | None = None,
        *,
        token: str | None = None,
        recorder: MetricsRecorder | None = None,
        metrics_dir: Path | None = None,
        threads: int = THREADS,
        model_name: str = "model",
        aliases: dict[str, str] | None = None,
    ) -> None:
        self.routing = routing or Routing()
        self.model_name = model_name
        """The model name the Open Inference Protocol routes answer for (besides each release id)."""
        self.aliases = dict(aliases or {})
        """Extra route -> deployer route ('/predict', '/health', '/ready') of a cloud's container contract."""
        self.recorder = recorder or MetricsRecorder()
        self.metrics_dir = metrics_dir
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="predict")
        self.shadow_pool = ThreadPoolExecutor(1, thread_name_prefix="shadow")
        self.lanes: dict[tuple[str, int, bool], Lane] = {}
        self.shadow_dropped = 0
        self.set_token(token)

    def set_token(self, token: str | None) -> None:
        self._auth = b"Bearer " + token.encode() if token else None

    def lane(self, release: str, model: Predictor, settings: Settings, shadow: bool = False) -> Lane:
        """The lane of ``release`` as loaded now (a reloaded release gets a new one)."""
        key = (release, id(model), shadow)
        lane = self.lanes.get(key)
        if lane is None:
            current = {(r, id(m)) for r, m in self.routing.releases.items()}
            for old in [k for k in self.lanes if (k[0], k[1]) not in current]:
                del self.lanes[old]
            batching = settings.batching if settings.batching is not None else bool(getattr(model, "batchable", False))
            series = self.recorder.get(release)
            lane = self.lanes[key] = Lane(
                model.predict,
                self.shadow_pool if shadow else self.pool,
                batching=batching,
                max_batch=settings.max_batch,
                max_wait_ms=settings.max_wait_ms,
                concurrency=1 if shadow else LANE_CONCURRENCY,
                capacity=SHADOW_CAPACITY_ROWS if shadow else None,
                on_batch=lambda rows: series.batch(time.time(), rows),
            )
        return lane

    def stuck(self) -> list[tuple[str, float, float]]:
        """(release, seconds its oldest prediction has run, its recycle limit) for running lanes."""
        now = time.monotonic()
        out = []
        for (rid, _, _), lane in list(self.lanes.items()):
            age = lane.stuck_s(now)
            if age > 0:
                out.append((rid, age, self.routing.settings_of(rid).recycle_after_s))
        return out

    def hung(self) -> str | None:
        """Why this worker should be recycled (a prediction past its release's limit), or None."""
        for rid, age, limit in self.stuck():
            if age > limit:
                return f"a prediction of release {rid} has run {age:.1f}s (limit {limit:g}s)"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            path = self.aliases.get(path, path)
            if scope["method"] == "POST" and path in _PREDICT:
                await self._predict(scope, receive, send)
            elif scope["method"] == "POST" and (spec := oip.infer_target(path)) is not None:
                await self._predict(scope, receive, send, spec)
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

    async def _predict(self, scope: Scope, receive: Receive, send: Send, infer: str | None = None) -> None:
        """A prediction; ``infer`` is the ``name[/versions/v]`` of an Open Inference Protocol request."""
        start = time.perf_counter()
        error = _error if infer is None else _oip_error
        target = None
        auth = None
        length = None
        csv = False
        for name, value in scope["headers"]:
            if name == b"x-deployer-release":
                target = value.decode("latin-1")
            elif name == b"authorization":
                auth = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"content-type":
                csv = value.split(b";")[0].strip().lower() == _CSV
        if self._auth is not None and (auth is None or not hmac.compare_digest(auth, self._auth)):
            await _drain(receive)
            await _reply(send, 401, error("unauthorized", "send Authorization: Bearer <token>"))
            return
        routing = self.routing
        model_name = None
        if infer is not None:
            found = oip.resolve(infer, self.model_name, routing)
            if found is None:
                await _drain(receive)
                await _reply(send, 404, error("unknown_model", f"no model {infer!r}; use {self.model_name!r}"))
                return
            model_name, pinned = found
            target = pinned or target
        split = target is None
        if target is None:
            target = routing.pick()
            if target is None:
                await _drain(receive)
                await _reply(send, 503, error("not_ready", "no release is serving traffic"))
                return
        model = routing.releases.get(target)
        if model is None:
            await _drain(receive)
            await _reply(send, 404, error("unknown_release", f"release {target!r} is not loaded here"))
            return
        settings = routing.settings_of(target)
        series = self.recorder.get(target)
        try:
            body = await _read_body(receive, settings.max_body_bytes, length)
            data = None if csv else _decode(body)
            rows = csv_rows(body) if csv else rows_of(data)
            x = contract_of(model).parse(rows)
        except _TooLarge:
            series.reject(time.time())
            message = f"the body is over the {settings.max_body_mb:g} MB limit; send fewer rows per request"
            await _reply(send, 413, error("too_large", message), target)
            return
        except BadInput as e:
            series.reject(time.time())
            await _reply(send, e.status, error(e.code, str(e)), target)
            return
        lane = self.lane(target, model, settings)
        try:
            predictions = await lane.submit(x, len(rows), settings.timeout_s)
            if model_name is None:
                answer = predictions_body(predictions, target, convert=_as_is)
            else:
                request_id = data.get("id") if isinstance(data, dict) else None
                answer = infer_body(predictions, model_name, target, request_id)
            out = orjson.dumps(answer, default=_default, option=_OPTS)
        except TimeoutError:
            series.observe(time.time(), (time.perf_counter() - start) * 1000.0, True)
            message = f"no prediction within {settings.timeout_s:g}s; the request was abandoned"
            await _reply(send, 504, error("timeout", message), target)
            return
        except Exception as e:
            series.observe(time.time(), (time.perf_counter() - start) * 1000.0, True)
            await _reply(send, 500, error("model_error", f"{type(e).__name__}: {e}"), target)
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
        if split and routing.mirror:
            asyncio.get_running_loop().call_soon(self._mirror, routing, target, rows)

    def _mirror(self, routing: Routing, served: str, rows: list[Any]) -> None:
        """Copy ``rows`` to each mirrored release with its percentage (never awaited by a caller)."""
        for rid, pct in routing.mirrored().items():
            if rid == served or random.random() * 100.0 >= pct:
                continue
            model = routing.releases[rid]
            settings = routing.settings_of(rid)
            series = self.recorder.get(rid)
            try:
                x = contract_of(model).parse(rows)
            except BadInput:
                series.reject(time.time())
                continue
            future = self.lane(rid, model, settings, shadow=True).offer(x, len(rows))
            if future is None:
                self.shadow_dropped += 1
                continue
            future.add_done_callback(_ShadowDone(series, settings.timeout_s))

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
        if path == "/openapi.json" and method in ("GET", "HEAD"):
            await _reply(send, 200, document(self._live_contract()))
            return
        if path in oip.PUBLIC and method in ("GET", "HEAD"):
            await self._oip(path, send)
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
                if window is not None and not 0 < window < float("inf"):
                    raise ValueError(window)
            except ValueError:
                await _reply(send, 400, _error("bad_request", "window must be a positive number of seconds"))
                return
            if query.get("format", [""])[0] == "prometheus":
                await _reply(send, 200, self.prometheus().encode(), content_type=_TEXT)
            else:
                await _reply(send, 200, orjson.dumps(self.metrics(window)))
            return
        if path.startswith(oip.PREFIX) and method in ("GET", "HEAD"):
            await self._oip(path, send)
            return
        if path in _PREDICT or path in _PUBLIC or path == "/metrics":
            allowed = "POST" if path in _PREDICT else "GET"
            await _reply(send, 405, _error("method_not_allowed", f"use {allowed} {path}"))
            return
        await _reply(send, 404, _error("not_found", f"no route {method} {path}"))

    async def _oip(self, path: str, send: Send) -> None:
        found = oip.answer(path, self.routing, self.model_name, __version__)
        if found is None:
            await _reply(send, 404, _error("not_found", f"no route GET {path}"))
            return
        await _reply(send, found[0], found[1])

    def _live_contract(self) -> Contract | None:
        """The input contract shared by every live release, if they share one."""
        routing = self.routing
        contracts = {contract_of(routing.releases[rid]) for rid in routing.live()}
        return contracts.pop() if len(contracts) == 1 else None

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
                "rejected": agg.rejected,
                "p50_ms": agg.percentile(0.5),
                "p99_ms": agg.percentile(0.99),
                "latency_ms_buckets": {_le(b): n for b, n in zip(BOUNDS_MS, agg.hist, strict=True)},
                "batch_sizes": agg.batch_sizes(),
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
            "# HELP deployer_rejected_total Requests refused before the model ran (4xx) by release.",
            "# TYPE deployer_rejected_total counter",
        ]
        lines += [f'deployer_rejected_total{{release="{r}"}} {a.rejected}' for r, a in aggs]
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


def _decode(body: bytes) -> Any:
    if not body:
        raise BadInput('the body is empty; send a JSON list of rows or {"instances": [...]}', "bad_json", 400)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadInput(f"request body is not JSON: {e}", "bad_json", 400) from None


async def _read_body(receive: Receive, limit: int, length: int | None) -> bytes:
    """The request body in linear time (chunks joined once); :class:`_TooLarge` past ``limit`` bytes."""
    if length is not None and length > limit:
        await _drain(receive)
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        msg = await receive()
        if msg["type"] != "http.request":  # the client went away
            break
        chunk = msg.get("body", b"")
        size += len(chunk)
        more = msg.get("more_body", False)
        if size > limit:
            if more:
                await _drain(receive, size)
            raise _TooLarge
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _drain(receive: Receive, read: int = 0) -> None:
    """Read and discard the rest of a request body (up to ``DRAIN_LIMIT``) so a reply can follow it."""
    more = True
    while more and read <= DRAIN_LIMIT:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        read += len(msg.get("body", b""))
        more = msg.get("more_body", False)


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"error": code, "message": message})


def _oip_error(code: str, message: str) -> bytes:
    """An Open Inference Protocol error: ``{"error": <message>}`` (plus deployer's code)."""
    return orjson.dumps({"error": message, "code": code})


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
