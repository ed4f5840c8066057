"""The Vertex AI fake served over HTTP on 127.0.0.1 (a free port), with Cloud Monitoring's gRPC service beside it."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import fake_monitoring
from .fake_vertex import ApiError, VertexFake


class _Handler(BaseHTTPRequestHandler):
    fake: VertexFake

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else "{}"
        try:
            status, payload = self.fake.handle(self.command, url.path, query, body)
        except ApiError as e:
            status, payload = e.code, {"error": {"code": e.code, "status": e.status, "message": e.message}}
        except Exception as e:  # a bug in the fake or a request it cannot parse: 400 / 500 with the reason
            bad = type(e).__name__ in ("ParseError", "ValueError", "TypeError", "KeyError")
            status = 400 if bad else 500
            self.fake.errors.append(f"{self.command} {url.path}: {type(e).__name__}: {e}")
            payload = {"error": {"code": status, "status": "INVALID_ARGUMENT" if bad else "INTERNAL",
                                 "message": f"{type(e).__name__}: {e}"}}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve


class FakeServer:
    """The fake on 127.0.0.1 (a free port), with Cloud Monitoring's gRPC service beside it."""

    def __init__(self, fake: VertexFake) -> None:
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.fake = fake
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.monitoring = fake_monitoring.MonitoringServer(fake)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        self.monitoring.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.monitoring.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
