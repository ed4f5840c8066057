"""Gate semantics: one evaluation per gate type, then verdicts across a bake.

The provider here is a small fake (it is the gates' input, not what is under test); webhook gates
talk to a real HTTP server on loopback.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deployer.errors import NotFoundError, TransientError
from deployer.gates import (
    GateContext,
    GateResult,
    GateSet,
    GateTracker,
    check_schema,
    evaluate,
)
from deployer.records import Metrics, Response
from deployer.spec import CallableGate, MetricGate, SmokeGate, Spec, WebhookGate

# --- inputs -------------------------------------------------------------------------------------


class FakeProvider:
    """Metrics and responses by release, as a provider would report them."""

    def __init__(
        self, metrics: dict[str, Metrics] | None = None, response: Response | Exception | None = None
    ) -> None:
        self.metrics_by_release = metrics or {}
        self.response = response
        self.invoked: list[tuple[str, Any, str | None]] = []
        self.metrics_error: Exception | None = None

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        if self.metrics_error is not None:
            raise self.metrics_error
        return self.metrics_by_release.get(release, Metrics(release=release, window_s=window_s))

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        self.invoked.append((endpoint, payload, release))
        if isinstance(self.response, Exception):
            raise self.response
        assert self.response is not None
        return self.response


def m(release: str, requests: int, errors: int = 0, **kw: Any) -> Metrics:
    return Metrics(release=release, window_s=60, requests=requests, errors=errors, **kw)


def ctx(provider: Any, baseline: str | None = "r0001", **kw: Any) -> GateContext:
    return GateContext(endpoint="churn", release="r0002", baseline=baseline, provider=provider,
                       window_s=60, clock=lambda: 1000.0, **kw)


# --- a real HTTP receiver -----------------------------------------------------------------------


class Receiver:
    """A loopback HTTP server: ``/status/NNN`` answers NNN, ``/slow`` answers after 2 s."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", 0))
                outer.bodies.append(json.loads(self.rfile.read(length) or b"null"))
                if self.path == "/slow":
                    time.sleep(2)
                    status = 200
                else:
                    status = int(self.path.rsplit("/", 1)[-1])
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/hook"


# --- metric gates -------------------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("min_samples", [0, 1, 100])
def test_zero_traffic_is_inconclusive_never_pass(min_samples: int) -> None:
    gate = MetricGate(metric="error_rate", max=0.01, min_samples=min_samples)
    r = evaluate(gate, ctx(FakeProvider({"r0002": m("r0002", 0)})))
    assert r.outcome == "inconclusive"
    assert "0 requests" in r.reason
    assert r.observed["requests"] == 0


@pytest.mark.timeout(10)
def test_below_min_samples_is_inconclusive_even_when_healthy() -> None:
    gate = MetricGate(metric="error_rate", max=0.01, min_samples=100)
    r = evaluate(gate, ctx(FakeProvider({"r0002": m("r0002", 99, 0)})))
    assert r.outcome == "inconclusive"
    assert "need 100" in r.reason
    r = evaluate(gate, ctx(FakeProvider({"r0002": m("r0002", 100, 0)})))
    assert r.outcome == "pass"


@pytest.mark.timeout(10)
def test_error_rate_max() -> None:
    gate = MetricGate(metric="error_rate", max=0.01, min_samples=10)
    bad = evaluate(gate, ctx(FakeProvider({"r0002": m("r0002", 100, 5)})))
    assert bad.outcome == "fail"
    assert "error_rate 0.05 > max 0.01" in bad.reason
    assert bad.observed == {"requests": 100, "errors": 5, "value": 0.05}
    assert bad.threshold == {"min_samples": 10, "max": 0.01}
    assert (bad.gate, bad.type, bad.release, bad.baseline, bad.at) == (
        "metric:error_rate", "metric", "r0002", "r0001", 1000.0)
    ok = evaluate(gate, ctx(FakeProvider({"r0002": m("r0002", 100, 1)})))
    assert ok.outcome == "pass"  # 0.01 <= 0.01


@pytest.mark.timeout(10)
def test_latency_min_requests_and_custom() -> None:
    p = FakeProvider({"r0002": m("r0002", 50, p50_ms=20.0, p99_ms=400.0, custom={"drift": 0.3})})
    assert evaluate(MetricGate(metric="p99_ms", max=300), ctx(p)).outcome == "fail"
    assert evaluate(MetricGate(metric="p50_ms", max=30), ctx(p)).outcome == "pass"
    assert evaluate(MetricGate(metric="requests", min=40), ctx(p)).outcome == "pass"
    low = evaluate(MetricGate(metric="requests", min=60), ctx(p))
    assert low.outcome == "fail" and "< min 60" in low.reason
    assert evaluate(MetricGate(metric="custom", custom_metric="drift", max=0.5), ctx(p)).outcome == "pass"
    drift = evaluate(MetricGate(metric="custom", custom_metric="drift", max=0.2), ctx(p))
    assert drift.outcome == "fail" and drift.gate == "metric:drift"
    both = evaluate(MetricGate(metric="p99_ms", min=500, max=300), ctx(p))
    assert both.outcome == "fail" and "> max" in both.reason and "< min" in both.reason


@pytest.mark.timeout(10)
def test_unreported_value_is_inconclusive() -> None:
    p = FakeProvider({"r0002": m("r0002", 50)})
    assert evaluate(MetricGate(metric="p99_ms", max=300), ctx(p)).outcome == "inconclusive"
    r = evaluate(MetricGate(metric="custom", custom_metric="drift", max=1), ctx(p))
    assert r.outcome == "inconclusive" and "no drift" in r.reason


@pytest.mark.timeout(10)
def test_provider_error_reading_metrics_is_inconclusive() -> None:
    p = FakeProvider()
    p.metrics_error = TransientError("throttled")
    r = evaluate(MetricGate(metric="error_rate", max=0.01), ctx(p))
    assert r.outcome == "inconclusive" and "throttled" in r.reason


@pytest.mark.timeout(10)
def test_baseline_delta() -> None:
    gate = MetricGate(metric="p99_ms", baseline_delta=50, min_samples=20)
    base = m("r0001", 100, p99_ms=200.0)
    ok = evaluate(gate, ctx(FakeProvider({"r0002": m("r0002", 30, p99_ms=250.0), "r0001": base})))
    assert ok.outcome == "pass"
    assert ok.observed["baseline_value"] == 200.0 and ok.observed["baseline_requests"] == 100
    bad = evaluate(gate, ctx(FakeProvider({"r0002": m("r0002", 30, p99_ms=251.0), "r0001": base})))
    assert bad.outcome == "fail" and "baseline 200 + delta 50" in bad.reason


@pytest.mark.timeout(10)
def test_baseline_with_too_few_samples_is_inconclusive() -> None:
    gate = MetricGate(metric="error_rate", baseline_delta=0.01, min_samples=20)
    p = FakeProvider({"r0002": m("r0002", 30, 0), "r0001": m("r0001", 5, 0)})
    r = evaluate(gate, ctx(p))
    assert r.outcome == "inconclusive" and "baseline r0001 has 5 requests" in r.reason
    p0 = FakeProvider({"r0002": m("r0002", 30, 0)})  # baseline with no traffic at all
    assert evaluate(MetricGate(metric="error_rate", baseline_delta=0.01, min_samples=0), ctx(p0)).outcome \
        == "inconclusive"


@pytest.mark.timeout(10)
def test_absolute_violation_fails_even_when_baseline_unknown() -> None:
    gate = MetricGate(metric="error_rate", max=0.01, baseline_delta=0.0, min_samples=10)
    p = FakeProvider({"r0002": m("r0002", 100, 50), "r0001": m("r0001", 1, 0)})
    assert evaluate(gate, ctx(p)).outcome == "fail"


@pytest.mark.timeout(10)
def test_no_baseline_release_skips_the_comparison() -> None:
    gate = MetricGate(metric="error_rate", baseline_delta=0.01, min_samples=10)
    r = evaluate(gate, ctx(FakeProvider({"r0002": m("r0002", 10, 0)}), baseline=None))
    assert r.outcome == "pass" and "no baseline" in r.reason
    # still never passes on zero traffic
    r = evaluate(gate, ctx(FakeProvider({"r0002": m("r0002", 0)}), baseline=None))
    assert r.outcome == "inconclusive"


# --- smoke gates --------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "required": ["predictions"],
    "properties": {"predictions": {"type": "array", "items": {"type": "number"}}},
}


@pytest.mark.timeout(10)
def test_smoke_pass_invokes_the_candidate_directly() -> None:
    p = FakeProvider(response=Response(status=200, body={"predictions": [0.1, 1]}, release="r0002"))
    r = evaluate(SmokeGate(payload=[[1, 2]], expect_schema=SCHEMA), ctx(p))
    assert r.outcome == "pass"
    assert p.invoked == [("churn", [[1, 2]], "r0002")]


@pytest.mark.timeout(10)
def test_smoke_status_mismatch_fails() -> None:
    p = FakeProvider(response=Response(status=500, body={"error": "boom"}))
    r = evaluate(SmokeGate(payload=[[1]]), ctx(p))
    assert r.outcome == "fail" and "status 500, expected 200" in r.reason
    assert r.observed["status"] == 500


@pytest.mark.timeout(10)
def test_smoke_schema_mismatch_fails_with_path() -> None:
    p = FakeProvider(response=Response(status=200, body={"predictions": [0.1, "x"]}))
    r = evaluate(SmokeGate(payload=[[1]], expect_schema=SCHEMA), ctx(p))
    assert r.outcome == "fail" and "$.predictions[1]: expected number, got string" in r.reason
    p = FakeProvider(response=Response(status=200, body='{"preds": []}'))  # JSON text body
    r = evaluate(SmokeGate(payload=[[1]], expect_schema=SCHEMA), ctx(p))
    assert r.outcome == "fail" and "missing required 'predictions'" in r.reason
    p = FakeProvider(response=Response(status=200, body="not json"))
    assert evaluate(SmokeGate(payload=[[1]], expect_schema=SCHEMA), ctx(p)).reason == "body is not JSON"


@pytest.mark.timeout(10)
def test_smoke_answered_by_another_release_is_inconclusive() -> None:
    p = FakeProvider(response=Response(status=200, body={}, release="r0001"))
    r = evaluate(SmokeGate(payload=[[1]]), ctx(p))
    assert r.outcome == "inconclusive" and "not the candidate" in r.reason


@pytest.mark.timeout(10)
def test_smoke_provider_errors() -> None:
    assert evaluate(SmokeGate(payload=1), ctx(FakeProvider(response=TransientError("503")))).outcome \
        == "inconclusive"
    r = evaluate(SmokeGate(payload=1), ctx(FakeProvider(response=NotFoundError("no such release"))))
    assert r.outcome == "fail" and "no such release" in r.reason


@pytest.mark.timeout(10)
def test_check_schema_subset() -> None:
    assert check_schema({"a": 1, "b": [True]}, {"type": "object", "required": ["a"],
                        "properties": {"a": {"type": "integer"}, "b": {"items": {"type": "boolean"}}}}) == []
    assert check_schema(True, {"type": "integer"}) == ["$: expected integer, got boolean"]
    assert check_schema(None, {"type": ["string", "null"]}) == []
    assert check_schema(2.0, {"type": "integer"}) == []
    assert check_schema([1, "a"], {"type": "array", "items": {"type": "integer"}}) == [
        "$[1]: expected integer, got string"]
    assert check_schema({"x": {"y": 1}}, {"properties": {"x": {"properties": {"y": {"type": "string"}}}}}) \
        == ["$.x.y: expected string, got integer"]


# --- callable gates -----------------------------------------------------------------------------


@pytest.fixture
def user_module() -> Iterator[types.ModuleType]:
    mod = types.ModuleType("deployer_test_user_gates")
    seen: list[GateContext] = []

    def ok(c: GateContext) -> bool:
        seen.append(c)
        return True

    def no(c: GateContext) -> bool:
        return False

    def result(c: GateContext) -> GateResult:
        return GateResult(gate="whatever", type="x", outcome="inconclusive", reason="model drift unknown",
                          observed={"drift": 0.1})

    def boom(c: GateContext) -> bool:
        raise RuntimeError("feature store down")

    def weird(c: GateContext) -> str:
        return "yes"

    mod.__dict__.update(ok=ok, no=no, result=result, boom=boom, weird=weird, seen=seen)
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


@pytest.mark.timeout(10)
def test_callable_returning_bool(user_module: types.ModuleType) -> None:
    c = ctx(FakeProvider())
    r = evaluate(CallableGate(function="deployer_test_user_gates:ok"), c)
    assert r.outcome == "pass" and user_module.seen == [c]
    assert evaluate(CallableGate(function="deployer_test_user_gates:no"), c).outcome == "fail"


@pytest.mark.timeout(10)
def test_callable_returning_gate_result_is_stamped(user_module: types.ModuleType) -> None:
    r = evaluate(CallableGate(name="drift", function="deployer_test_user_gates:result"), ctx(FakeProvider()))
    assert (r.gate, r.type, r.outcome, r.reason, r.release, r.at) == (
        "drift", "callable", "inconclusive", "model drift unknown", "r0002", 1000.0)
    assert r.observed == {"drift": 0.1}


@pytest.mark.timeout(10)
def test_callable_raising_or_missing_fails_with_reason(user_module: types.ModuleType) -> None:
    r = evaluate(CallableGate(function="deployer_test_user_gates:boom"), ctx(FakeProvider()))
    assert r.outcome == "fail" and "RuntimeError: feature store down" in r.reason
    r = evaluate(CallableGate(function="no_such_module_xyz:fn"), ctx(FakeProvider()))
    assert r.outcome == "fail" and "ModuleNotFoundError" in r.reason
    r = evaluate(CallableGate(function="deployer_test_user_gates:missing"), ctx(FakeProvider()))
    assert r.outcome == "fail" and "AttributeError" in r.reason
    r = evaluate(CallableGate(function="deployer_test_user_gates:weird"), ctx(FakeProvider()))
    assert r.outcome == "fail" and "return a bool or a GateResult" in r.reason


# --- webhook gates (real HTTP) ------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_webhook_2xx_passes_and_receives_the_context(receiver: Receiver) -> None:
    r = evaluate(WebhookGate(name="qa", url=receiver.url + "/status/204"), ctx(FakeProvider(), weight=10))
    assert r.outcome == "pass" and r.observed == {"status": 204}
    assert receiver.bodies == [{"endpoint": "churn", "release": "r0002", "baseline": "r0001", "window_s": 60,
                                "weight": 10, "mirror": None, "at": 1000.0, "gate": "qa"}]


@pytest.mark.timeout(20)
def test_webhook_500_fails(receiver: Receiver) -> None:
    r = evaluate(WebhookGate(url=receiver.url + "/status/500"), ctx(FakeProvider()))
    assert r.outcome == "fail" and "500" in r.reason


@pytest.mark.timeout(20)
def test_webhook_unreachable_or_timeout_is_inconclusive(receiver: Receiver) -> None:
    r = evaluate(WebhookGate(url=closed_port_url()), ctx(FakeProvider()))
    assert r.outcome == "inconclusive" and "unreachable" in r.reason
    t0 = time.monotonic()
    r = evaluate(WebhookGate(url=receiver.url + "/slow", timeout_s=0.3), ctx(FakeProvider()))
    assert r.outcome == "inconclusive" and "TimeoutError" in r.reason
    assert time.monotonic() - t0 < 1.9


@pytest.mark.timeout(10)
def test_webhook_uses_the_injected_poster() -> None:
    calls: list[tuple[str, float]] = []

    def post(url: str, body: dict[str, Any], timeout_s: float) -> int:
        calls.append((url, timeout_s))
        return 200

    r = evaluate(WebhookGate(url="https://qa.example/check", timeout_s=2), ctx(FakeProvider(), post=post))
    assert r.outcome == "pass" and calls == [("https://qa.example/check", 2.0)]


# --- verdicts across a bake ---------------------------------------------------------------------


def res(outcome: str, gate: str = "g") -> GateResult:
    return GateResult(gate=gate, type="metric", outcome=outcome, reason=f"it was {outcome}")  # type: ignore[arg-type]


def track(gate: Any, *outcomes: str) -> GateTracker:
    t = GateTracker(gate)
    for o in outcomes:
        t.record(res(o))
    return t


G = MetricGate(metric="error_rate", max=0.01)


@pytest.mark.timeout(10)
def test_successes_required_means_consecutive() -> None:
    gate = G.model_copy(update={"successes_required": 3})
    assert track(gate, "pass", "pass").verdict() == "pending"
    assert track(gate, "pass", "pass", "pass").verdict() == "pass"
    assert track(gate, "pass", "pass", "inconclusive", "pass").verdict() == "pending"
    assert track(gate, "pass", "inconclusive", "pass", "pass", "pass").verdict() == "pass"


@pytest.mark.timeout(10)
def test_failure_limit_counts_all_failures_and_sticks() -> None:
    gate = G.model_copy(update={"failure_limit": 3})
    assert track(gate, "fail", "fail").verdict() == "pending"
    t = track(gate, "fail", "pass", "fail", "pass", "fail")
    assert t.verdict() == "fail" and "3 failure(s), limit 3" in t.reason()
    t.record(res("pass"))
    assert t.verdict() == "fail"
    assert track(G, "fail").verdict() == "fail"  # default failure_limit 1


@pytest.mark.timeout(10)
def test_pass_is_lost_when_the_gate_fails_again() -> None:
    gate = G.model_copy(update={"failure_limit": 2})
    t = track(gate, "pass")
    assert t.verdict() == "pass"
    t.record(res("fail"))
    assert t.verdict() == "pending"


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("policy", "bake_end", "deadline"),
    [("fail", "fail", "fail"), ("pass", "pass", "pass"), ("wait", "pending", "fail")],
)
def test_inconclusive_policy_at_bake_end_and_deadline(policy: str, bake_end: str, deadline: str) -> None:
    gate = G.model_copy(update={"inconclusive": policy})
    t = track(gate, "inconclusive", "inconclusive")
    assert t.verdict("during") == "pending"
    assert t.verdict("bake_end") == bake_end
    verdict, reason = t.final()
    assert verdict == deadline
    if policy == "wait":
        assert reason.startswith("inconclusive at deadline")
    # a gate never evaluated is treated as inconclusive
    assert track(gate).verdict("bake_end") == bake_end


@pytest.mark.timeout(10)
def test_conclusive_but_unproven_keeps_waiting_then_fails() -> None:
    gate = G.model_copy(update={"successes_required": 3, "failure_limit": 2, "inconclusive": "pass"})
    t = track(gate, "pass", "pass")
    assert t.verdict("bake_end") == "pending"
    assert t.final() == ("fail", "not proven at deadline: 2/3 consecutive passes, 0/2 failures")
    assert track(gate, "fail").verdict("bake_end") == "pending"


class Scripted:
    """A provider whose candidate error count follows a script, one entry per round."""

    def __init__(self, errors: list[int | None]) -> None:
        self.errors = errors
        self.round = 0

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        e = self.errors[min(self.round, len(self.errors) - 1)]
        return Metrics(release=release, window_s=window_s, requests=0 if e is None else 100, errors=e or 0)

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        return Response(status=200, body={"predictions": [1]}, release=release)


@pytest.mark.timeout(10)
def test_gate_set_rounds_and_evidence() -> None:
    p = Scripted([None, 0, 0, 0])
    gs = GateSet([MetricGate(metric="error_rate", max=0.01, successes_required=2),
                  SmokeGate(payload=[[1]], expect_schema=SCHEMA),
                  MetricGate(metric="error_rate", max=0.05)])
    assert [t.name for t in gs.trackers] == ["metric:error_rate", "smoke", "metric:error_rate#2"]
    c = ctx(p)
    out = gs.evaluate_round(c)
    assert [r.outcome for r in out] == ["inconclusive", "pass", "inconclusive"]
    assert gs.decision() == "pending"
    assert set(gs.reasons()) == {"metric:error_rate", "metric:error_rate#2"}
    p.round = 1
    gs.evaluate_round(c)
    assert gs.decision() == "pending"
    p.round = 2
    gs.evaluate_round(c)
    assert gs.decision() == "pass" and gs.reasons() == {}
    evidence = gs.evidence()
    assert len(evidence) == 9
    json.dumps(evidence)  # JSON-safe for the ledger
    ev = gs.results[0].to_event("churn")
    assert (ev.kind, ev.gate, ev.outcome, ev.release) == ("gate.evaluated", "metric:error_rate",
                                                          "inconclusive", "r0002")


@pytest.mark.timeout(10)
def test_gate_set_fails_when_any_gate_fails() -> None:
    gs = GateSet([MetricGate(metric="error_rate", max=0.01), SmokeGate(payload=1)])
    gs.evaluate_round(ctx(Scripted([50])))
    assert gs.decision() == "fail"
    assert "error_rate 0.5 > max 0.01" in gs.reasons()["metric:error_rate"]


@pytest.mark.timeout(10)
def test_gate_set_zero_traffic_waits_then_fails_at_deadline() -> None:
    gs = GateSet([MetricGate(metric="error_rate", max=0.01)])
    for _ in range(3):
        gs.evaluate_round(ctx(Scripted([None])))
    assert gs.decision("bake_end") == "pending"
    assert gs.final() == "fail"
    assert gs.reasons("deadline")["metric:error_rate"].startswith("inconclusive at deadline")


@pytest.mark.timeout(10)
def test_no_gates_pass() -> None:
    gs = GateSet([])
    assert gs.evaluate_round(ctx(FakeProvider())) == []
    assert gs.decision() == gs.final() == "pass"


@pytest.mark.timeout(10)
def test_gates_from_a_spec() -> None:
    spec = Spec.model_validate({
        "name": "churn", "model": {"path": "m.joblib"},
        "gates": [{"type": "metric", "metric": "p99_ms", "max": 300, "min_samples": 10},
                  {"type": "webhook", "url": "http://127.0.0.1:1/x"}],
    })
    gs = GateSet(spec.gates)
    assert [t.name for t in gs.trackers] == ["metric:p99_ms", "webhook"]


@pytest.mark.timeout(10)
def test_to_dict_is_json_safe_for_odd_values() -> None:
    r = GateResult(gate="g", type="metric", outcome="pass", reason="", observed={"v": float("nan")})
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False))["observed"] == {"v": "nan"}

