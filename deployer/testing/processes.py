"""Processes a test starts: a built image's runtime run as a plain process, and stopping by pid.

Cloud fakes run an image made by ``deployer build`` the way the cloud runs a container: its
entrypoint (``python -m deployer.serving``) with the image's ``ENV`` (read from the context's
Dockerfile, its ``/opt/deployer`` paths read inside the context) and the platform's environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PLATFORM_PREFIXES = ("DEPLOYER_", "SAGEMAKER_", "AIP_", "AZUREML_")


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Terminate ``proc`` and reap it; kill it when it outlives ``grace_s``."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_env(context: Path) -> dict[str, str]:
    """The ``ENV`` of a build context's Dockerfile (without PATH), its /opt/deployer paths read in ``context``."""
    text = (Path(context) / "Dockerfile").read_text().replace("\\\n", " ")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                if key != "PATH":
                    out[key] = value.replace("/opt/deployer/", f"{context}/")
    return out


def run_image(
    context: Path, platform_env: dict[str, str], args: tuple[str, ...], log: Path, ready: str, port_var: str
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the image of ``context`` on 127.0.0.1 (a free port in ``port_var``); return once ``ready`` is 200."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(PLATFORM_PREFIXES)}
    env.update(image_env(context))
    env.update(platform_env)
    env.update({port_var: str(port), "DEPLOYER_HOST": "127.0.0.1"})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deployer.serving", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the container exited with {proc.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=1) as resp:
                if resp.status == 200:
                    return proc, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"the container never answered {ready}: {log.read_text()}")
        time.sleep(0.1)


def post(url: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a POST, error statuses included."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", "application/json"), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", "application/json"), e.read()
