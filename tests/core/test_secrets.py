"""Secrets kept secret: the local token survives redeploys and rollbacks run without it, nothing
stored or printed holds a secret value, the ledger and the deployer home are private.

The end-to-end test drives the real CLI against a real local endpoint and a real webhook receiver
on 127.0.0.1, with distinctive secret values, then greps every byte the run left behind."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from deployer.cli import cli
from deployer.errors import SpecError
from deployer.events import Promoted
from deployer.ledger import Ledger
from deployer.local.provider import LocalOptions, LocalProvider
from deployer.local.state import Desired, Paths, read_pid, write_desired
from deployer.notify import notify
from deployer.protocols import ProviderContext
from deployer.secrets import REDACTED, redact_options, redact_url, revealed
from deployer.spec import Spec, Target

TOKEN = "tok-LOCAL-SECRET-3b9e71"
NOTIFY_PASSWORD = "NOTIFY-PASSWORD-7f3c2"
NOTIFY_PATH = "NOTIFY-PATH-SECRET-91cd"
GATE_PATH = "GATE-PATH-SECRET-5d2a"
GATE_QUERY = "GATE-QUERY-SECRET-a8e0"
SECRETS = (TOKEN, NOTIFY_PASSWORD, NOTIFY_PATH, GATE_PATH, GATE_QUERY)


class Hooks:
    """A loopback receiver for webhook gates and notifications: answers 200, keeps the paths."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    yield h
    h.server.shutdown()
    h.server.server_close()


def _model(path: Path, flip: bool) -> None:
    rng = np.random.RandomState(0)
    x = rng.randn(100, 4)
    y = (x[:, 0] > 0).astype(int)
    joblib.dump(LogisticRegression().fit(x, 1 - y if flip else y), path)


def _stop(home: Path) -> None:
    for pidfile in (home / "local" / "endpoints").glob("*/supervisor.pid"):
        pid = read_pid(Paths(pidfile.parent))
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _last(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.timeout(90)
def test_redeploy_and_rollback_without_the_token_keep_it_and_nothing_holds_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    monkeypatch.setenv("DEPLOYER_LOCAL_TOKEN", TOKEN)
    model = tmp_path / "model.joblib"
    _model(model, flip=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
name: secret-demo
model: {{path: {model}}}
strategy: {{type: canary, steps: [{{weight: 100, bake_s: 0.2}}]}}
gates:
  - {{type: webhook, name: qa, url: "http://127.0.0.1:{hooks.port}/gate/{GATE_PATH}?key={GATE_QUERY}"}}
notify_webhook: "http://hooks:{NOTIFY_PASSWORD}@127.0.0.1:{hooks.port}/services/T0/B0/{NOTIFY_PATH}"
provider_options: {{host: 127.0.0.1, token: "${{DEPLOYER_LOCAL_TOKEN}}"}}
"""
    )
    runner = CliRunner()
    outputs: list[str] = []

    def cli_json(*args: str) -> dict[str, Any]:
        result = runner.invoke(cli, [*args, "--json"])
        outputs.append(result.output)
        return _last(result)

    def answers(token: str | None) -> int:
        url = cli_json("status", "secret-demo")["url"]
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{url}/predict", json={"instances": [[1, 0, 0, 0]]}, headers=headers).status_code

    try:
        assert cli_json("deploy", str(spec))["release"] == "r0001"
        assert any(NOTIFY_PATH in p for p in hooks.paths), "the promotion was notified"
        assert answers(None) == 401 and answers(TOKEN) == 200
        outputs.append(json.dumps(cli_json("plan", str(spec))))  # with the token in the spec

        # A redeploy in a shell without the token: the spec's ${DEPLOYER_LOCAL_TOKEN} has nowhere to
        # come from, so it is written without one; the endpoint keeps its token.
        monkeypatch.delenv("DEPLOYER_LOCAL_TOKEN")
        spec.write_text(spec.read_text().replace(', token: "${DEPLOYER_LOCAL_TOKEN}"', ""))
        _model(model, flip=True)
        outputs.append(json.dumps(cli_json("plan", str(spec))))
        assert cli_json("deploy", str(spec))["release"] == "r0002"
        assert any(GATE_PATH in p for p in hooks.paths), "the webhook gate was evaluated"
        assert answers(None) == 401 and answers(TOKEN) == 200

        assert cli_json("rollback", "secret-demo")["release"] == "r0001"
        assert answers(None) == 401 and answers(TOKEN) == 200
        outputs.append(json.dumps(cli_json("history", "secret-demo")))
    finally:
        runner.invoke(cli, ["destroy", "secret-demo"])
        _stop(home)

    stored = {p: p.read_bytes() for p in home.rglob("*") if p.is_file() and "sha256" not in p.parts}
    assert home / "ledger.db" in stored
    texts = {str(p): b.decode("latin-1") for p, b in stored.items()}
    texts.update({f"cli output {i}": o for i, o in enumerate(outputs)}, log=caplog.text)
    leaks = [(where, s) for where, text in texts.items() for s in SECRETS if s in text]
    assert not leaks, leaks
    ledger = Ledger(home / "ledger.db")
    try:
        first = ledger.release("secret-demo", "r0001")
        assert first is not None and first.release.options["token"] == REDACTED  # stored, but never in clear
    finally:
        ledger.close()


def test_validate_and_every_write_refuse_any_interface_without_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEPLOYER_LOCAL_TOKEN", raising=False)
    provider = LocalProvider(ProviderContext(target=Target(), options=LocalOptions(), home=tmp_path))
    spec = Spec.model_validate(
        {"name": "open-ep", "model": {"path": str(tmp_path)}, "provider_options": {"host": "0.0.0.0"}}
    )
    with pytest.raises(SpecError) as e:
        provider.validate(spec)
    assert e.value.field == "provider_options.token" and "0.0.0.0" in str(e.value)
    with pytest.raises(SpecError):  # the one write path every verb goes through
        provider._write(provider.paths("open-ep"), Desired(endpoint="open-ep", host="0.0.0.0"))
    assert not provider.paths("open-ep").desired.exists()
    # an endpoint that already has a token keeps it: a redeploy without one is valid
    write_desired(provider.paths("open-ep"), Desired(endpoint="open-ep", host="0.0.0.0", token=TOKEN))
    provider.validate(spec)


def test_serve_on_any_interface_without_a_token_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deployer.local.serve import main

    monkeypatch.delenv("DEPLOYER_LOCAL_TOKEN", raising=False)
    model = tmp_path / "model.joblib"
    _model(model, flip=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: served\nmodel: {{path: {model}}}\n")
    result = CliRunner().invoke(cli, ["serve", str(spec), "--host", "0.0.0.0"])
    assert result.exit_code == 2, result.output
    assert "needs a bearer token" in result.output and "DEPLOYER_LOCAL_TOKEN" in result.output
    assert main([str(model), "--host", "0.0.0.0"]) == 2


def test_ledger_and_home_are_created_private_and_loose_ones_tightened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    old = os.umask(0o022)
    try:
        Ledger(home / "ledger.db").close()
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "ledger.db").stat().st_mode) == 0o600
        os.chmod(home, 0o755)
        os.chmod(home / "ledger.db", 0o644)
        with caplog.at_level(logging.WARNING, logger="deployer"):
            Ledger(home / "ledger.db").close()
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "ledger.db").stat().st_mode) == 0o600
        assert "readable by others" in caplog.text
        other = tmp_path / "shared-dir"
        Ledger(other / "ledger.db").close()  # a --state path: the file is private, its directory untouched
        assert stat.S_IMODE(other.stat().st_mode) == 0o755
        assert stat.S_IMODE((other / "ledger.db").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_redacted_forms() -> None:
    assert redact_url("https://u:pw@hooks.slack.com/services/T/B/xyz?x=1") == "https://hooks.slack.com/…"
    assert redact_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"
    stored = redact_options({"host": "0.0.0.0", "token": TOKEN}, LocalOptions)
    assert stored == {"host": "0.0.0.0", "token": REDACTED}
    assert revealed(stored) == {"host": "0.0.0.0"}
    sent = notify(f"http://u:{NOTIFY_PASSWORD}@127.0.0.1:1/{NOTIFY_PATH}", Promoted("ep", release="r0001"))
    assert not sent and sent.error and not any(s in sent.error for s in SECRETS)
