"""Notifications: Slack-compatible bodies over real HTTP; a failed notification never raises."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deployer.events import Promoted, RolledBack, StepDone
from deployer.notify import MAX_TIMEOUT_S, message, notify


class Receiver:
    """A loopback HTTP server: ``/status/NNN`` answers NNN, ``/slow`` answers after 2 s."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((self.path, self.headers.get("Content-Type", ""), json.loads(raw)))
                if self.path == "/slow":
                    time.sleep(2)
                status = 200 if self.path == "/slow" else int(self.path.rsplit("/", 1)[-1])
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
    r.thread.join(5)


ROLLBACK = RolledBack(endpoint="churn", from_release="r0002", to_release="r0001",
                      reason="gate metric:error_rate failed: error_rate 0.05 > max 0.01")
PROMOTED = Promoted(endpoint="churn", release="r0002")


@pytest.mark.timeout(20)
def test_rollback_posts_slack_body(receiver: Receiver) -> None:
    out = notify(receiver.url + "/status/200", ROLLBACK)
    assert out and out.ok and out.status == 200 and out.error is None
    [(path, ctype, body)] = receiver.requests
    assert ctype.startswith("application/json")
    text = body["text"]
    for part in ("churn", "r0002", "r0001", "error_rate 0.05 > max 0.01"):
        assert part in text
    blob = json.dumps(body["blocks"])
    for part in ("Endpoint", "churn", "From release", "r0002", "To release", "r0001", "Reason"):
        assert part in blob
    assert all(b["type"] in {"header", "section"} for b in body["blocks"])


@pytest.mark.timeout(20)
def test_promotion_posts_slack_body(receiver: Receiver) -> None:
    assert notify(receiver.url + "/status/204", PROMOTED)
    [(_, _, body)] = receiver.requests
    assert "Promoted release r0002" in body["text"] and "churn" in body["text"]


@pytest.mark.timeout(20)
def test_non_2xx_is_reported_not_raised(receiver: Receiver) -> None:
    out = notify(receiver.url + "/status/500", ROLLBACK)
    assert not out and out.status == 500 and out.error == "receiver answered 500"


@pytest.mark.timeout(20)
def test_unreachable_is_reported_not_raised() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = notify(f"http://127.0.0.1:{port}/hook", ROLLBACK)
    assert not out and out.status is None and "ConnectionError" in (out.error or "")


@pytest.mark.timeout(20)
def test_timeout_is_bounded(receiver: Receiver) -> None:
    t0 = time.monotonic()
    out = notify(receiver.url + "/slow", PROMOTED, timeout_s=0.3)
    assert not out and "TimeoutError" in (out.error or "")
    assert time.monotonic() - t0 < 1.9


@pytest.mark.timeout(10)
def test_timeout_is_clamped() -> None:
    seen: list[float] = []

    def post(url: str, body: dict[str, Any], timeout_s: float) -> int:
        seen.append(timeout_s)
        return 200

    notify("https://hooks.example/x", PROMOTED, timeout_s=3600, post=post)
    assert seen == [MAX_TIMEOUT_S]


@pytest.mark.timeout(10)
def test_bad_url_and_other_events_do_not_post() -> None:
    def post(url: str, body: dict[str, Any], timeout_s: float) -> int:
        raise AssertionError("must not post")

    out = notify("ftp://example/x", ROLLBACK, post=post)
    assert not out and "http://" in (out.error or "")
    out = notify("https://hooks.example/x", StepDone(endpoint="churn", step="route"), post=post)
    assert not out and "not notified" in (out.error or "")
    assert message(StepDone(endpoint="churn")) is None


@pytest.mark.timeout(10)
def test_poster_exception_of_any_kind_is_swallowed() -> None:
    def post(url: str, body: dict[str, Any], timeout_s: float) -> int:
        raise ValueError("bad header")

    out = notify("https://hooks.example/x", ROLLBACK, post=post)
    assert not out and out.error == "ValueError: bad header"
