"""The ``local`` provider: a real HTTP endpoint on this machine, the reference implementation.

Each endpoint is one detached supervisor process (:mod:`deployer.local.supervisor`) that binds a
socket and forks worker processes; every worker serves every release of the endpoint and splits
traffic in-process. The provider only writes ``desired.json`` and reads what the supervisor and
workers report (:mod:`deployer.local.state`), so every call is quick and never waits.

Where it differs from the protocol:

* ``scale`` sets a fixed worker count (``autoscaling.min``, at least 1) for the release; the
  endpoint runs the largest count among its releases. There is no autoscaling and no scale to zero.
* ``host``, ``port`` are fixed when the endpoint is created (destroy it to change them);
  the ``token`` can change at any time.
* Shadow traffic (``traffic.mirror``) is copied by each worker after the caller has its answer, on
  a thread of its own with a bounded queue: when the mirrored release cannot keep up, copies are
  dropped rather than queued, so callers never wait for it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from deployer.errors import (
    CapabilityError,
    ConflictError,
    NotFoundError,
    SpecError,
    StorageError,
    TransientError,
)
from deployer.local.bind import TOKEN_ENV, require_token
from deployer.local.liveness import check_port, running_pid, started, stop_orphans
from deployer.local.state import (
    Desired,
    Paths,
    ReleaseSpec,
    desired_lock,
    log_tail,
    read_acks,
    read_desired,
    read_json,
    read_lock_pid,
    remembered_port,
    write_atomic,
    write_desired,
)
from deployer.local.store import LocalArtifactStore
from deployer.protocols import ProviderContext
from deployer.records import (
    Capabilities,
    Metrics,
    Observed,
    ObservedRelease,
    Operation,
    OperationStatus,
    Release,
    Response,
    Traffic,
)
from deployer.secrets import reveal, revealed
from deployer.serving.metrics import aggregate, read_snapshots
from deployer.spec import NAME_RE, Autoscaling, Spec


def _env_token() -> SecretStr | None:
    value = os.environ.get(TOKEN_ENV)
    return SecretStr(value) if value else None


class LocalOptions(BaseModel):
    """``provider_options`` for ``target.provider: local``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Interface to listen on; anything but loopback needs a token.")
    port: int = Field(0, ge=0, le=65535, description="TCP port; 0 picks a free one (kept across restarts).")
    token: SecretStr | None = Field(
        default_factory=_env_token,
        description="Bearer token clients must send (default: $DEPLOYER_LOCAL_TOKEN). A secret: the ledger "
        "stores it redacted, and a deploy, rollback or guard run without one keeps the endpoint's token.",
    )
    request_timeout_s: float = Field(30.0, gt=0, description="Timeout of invoke() requests.")
    stop_timeout_s: float = Field(15.0, gt=0, description="destroy: SIGKILL what still runs after this.")


CAPABILITIES = Capabilities(
    traffic_split=True,
    autoscaling=False,
    scale_to_zero=False,
    metrics=True,
    native_rollout=False,
    container_images=False,
    shadow=True,
    unsupported={
        "autoscaling": "the local provider runs a fixed number of worker processes; scale sets it to autoscaling.min",
        "scale_to_zero": "local workers keep running; destroy the endpoint to free it",
        "native_rollout": "the local provider has no platform-managed rollout; the core runs the strategy",
        "container_images": "the local provider serves sklearn, onnx and python models in-process; "
        "serve container images with a cloud provider",
    },
)


def _live_state(paths: Paths) -> tuple[int | None, dict[str, Any] | None]:
    """The running supervisor's pid and the state it wrote (None while it has written none yet)."""
    pid = running_pid(paths)
    if pid is None:
        return None, None
    state = read_json(paths.state)
    return pid, state if state is not None and state.get("pid") == pid else None


class LocalProvider:
    """Endpoints served by supervisor processes under ``<home>/local``."""

    name: ClassVar[str] = "local"
    Options: ClassVar[type[BaseModel]] = LocalOptions
    capabilities: Capabilities = CAPABILITIES
    retire_failed_default: ClassVar[bool] = False  # a failed local candidate costs nothing: keep it to inspect

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.root = Path(ctx.home) / "local"
        opts = ctx.options
        self.options = opts if isinstance(opts, LocalOptions) else self._parse(opts.model_dump(), "provider_options")

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _parse(raw: dict[str, Any], where: str) -> LocalOptions:
        try:
            return LocalOptions.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join([where, *(str(p) for p in err["loc"])])
            raise SpecError(field, err["msg"], fix="see docs/providers/local.md for the local options") from e

    def _opts(self, release: Release | None = None) -> LocalOptions:
        if release is not None and release.options:
            return self._parse(revealed(release.options), "provider_options")
        return self.options

    def _token(self, opts: LocalOptions, current: Desired | None) -> str | None:
        """The token to serve with: the one given (release options, the provider's options or
        ``$DEPLOYER_LOCAL_TOKEN``), else the one the endpoint already has. Never dropped."""
        given = reveal(opts.token) or reveal(self.options.token)
        return given or (current.token if current is not None else None)

    def paths(self, endpoint: str) -> Paths:
        if not NAME_RE.fullmatch(endpoint):
            raise SpecError("name", f"invalid endpoint name {endpoint!r}")
        return Paths(self.root / "endpoints" / endpoint)

    def _op(self, kind: Any, endpoint: str, release: str | None, version: int, **ref: str) -> Operation:
        return Operation(
            kind=kind,
            provider=self.name,
            endpoint=endpoint,
            release=release,
            ref={"version": str(version), **ref},
        )

    def _start_supervisor(self, paths: Paths) -> int:
        pid = running_pid(paths)
        if pid is not None:
            return pid
        paths.root.mkdir(parents=True, exist_ok=True)
        with open(paths.log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "deployer.local.supervisor", str(paths.root)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=paths.root,
                start_new_session=True,
                close_fds=True,
            )
        started(paths, proc)
        write_atomic(paths.pid, f"{proc.pid}\n".encode(), mode=0o644)
        return proc.pid

    def _write(self, paths: Paths, desired: Desired) -> Desired:
        workers = max([r.replicas for r in desired.releases.values()] or [1])
        new = replace(desired, workers=workers, version=desired.version + 1)
        require_token(new.host, new.token)
        write_desired(paths, new)
        return new

    # -- the protocol ---------------------------------------------------------------------
    def validate(self, spec: Spec) -> None:
        opts = self._parse(spec.provider_options, "provider_options")
        if spec.model.flavor == "container":
            raise CapabilityError(CAPABILITIES.reason("container_images"))
        current = read_desired(self.paths(spec.name))
        require_token(opts.host, reveal(opts.token) or (current.token if current is not None else None))
        if spec.autoscaling is not None and spec.autoscaling.scale_to_zero:
            raise CapabilityError(CAPABILITIES.reason("scale_to_zero"))

    def store(self) -> LocalArtifactStore:
        return LocalArtifactStore(self.root / "artifacts")

    def deploy_release(self, release: Release, traffic: Traffic) -> Operation:
        if release.flavor == "container":
            raise CapabilityError(CAPABILITIES.reason("container_images"))
        if release.artifact is None:
            raise StorageError(f"release {release.id} has no packaged artifact to serve")
        opts = self._opts(release)
        paths = self.paths(release.endpoint)
        check_port(paths, release.endpoint)
        model_dir = self.store().model_dir(release.artifact)
        spec = ReleaseSpec(
            path=str(model_dir),
            flavor=release.flavor,
            entrypoint=release.entrypoint,
            fingerprint=release.fingerprint,
            replicas=release.resources.replicas,
        )
        with desired_lock(paths):
            current = read_desired(paths)
            _, state = _live_state(paths)
            found = current.releases.get(release.id) if current is not None else None
            if found is not None and found.fingerprint != release.fingerprint:
                raise ConflictError(
                    f"endpoint {release.endpoint!r} already serves a {release.id} with fingerprint "
                    f"{(found.fingerprint or 'none')[:12]}, not {release.fingerprint[:12]}",
                    hint=f"another ledger made it: `deployer adopt {release.endpoint} --spec SPEC`",
                )
            token = self._token(opts, current)
            if current is None:
                current = Desired(endpoint=release.endpoint, host=opts.host, port=opts.port, token=token)
            elif state is not None and (opts.host != current.host or (opts.port and opts.port != state.get("port"))):
                raise ConflictError(
                    f"endpoint {release.endpoint!r} listens on {current.host}:{state.get('port')}; "
                    f"cannot move it to {opts.host}:{opts.port}",
                    hint="destroy the endpoint to change host or port",
                )
            releases = {**current.releases, release.id: spec}
            weights = dict(traffic.weights) if traffic.weights else dict(current.weights)
            if not weights:
                weights = {release.id: 100}
            unknown = sorted(set(weights) - set(releases))
            if unknown:
                raise NotFoundError(f"traffic names releases that are not deployed: {', '.join(unknown)}")
            weights = {rid: weights.get(rid, 0) for rid in releases}
            mirror = dict(traffic.mirror) if traffic.weights else dict(current.mirror)
            _check_mirror(mirror, releases)
            desired = current
            new = (releases, weights, mirror, token)
            if new != (current.releases, current.weights, current.mirror, current.token) or current.version == 0:
                desired = self._write(
                    paths, replace(current, releases=releases, weights=weights, mirror=mirror, token=token)
                )
        self._start_supervisor(paths)
        return self._op("deploy_release", release.endpoint, release.id, desired.version)

    def route(self, endpoint: str, traffic: Traffic) -> Operation:
        paths = self.paths(endpoint)
        check_port(paths, endpoint)
        with desired_lock(paths):
            current = read_desired(paths)
            if current is None:
                raise NotFoundError(f"local endpoint {endpoint!r} does not exist")
            unknown = sorted(set(traffic.weights) - set(current.releases))
            if unknown:
                raise NotFoundError(f"cannot route to releases that are not deployed: {', '.join(unknown)}")
            weights = {rid: traffic.weights.get(rid, 0) for rid in current.releases}
            mirror = dict(traffic.mirror)
            _check_mirror(mirror, current.releases)
            desired = current
            if (weights, mirror) != (current.weights, current.mirror):
                desired = self._write(paths, replace(current, weights=weights, mirror=mirror))
        self._start_supervisor(paths)
        return self._op("route", endpoint, None, desired.version)

    def scale(self, endpoint: str, release: str, autoscaling: Autoscaling) -> Operation:
        paths = self.paths(endpoint)
        check_port(paths, endpoint)
        with desired_lock(paths):
            current = read_desired(paths)
            if current is None or release not in current.releases:
                raise NotFoundError(f"release {release!r} of local endpoint {endpoint!r} does not exist")
            spec = current.releases[release]
            new_spec = replace(spec, replicas=max(1, autoscaling.min))
            desired = current
            if new_spec != spec:
                releases = {**current.releases, release: new_spec}
                desired = self._write(paths, replace(current, releases=releases))
        self._start_supervisor(paths)
        return self._op("scale", endpoint, release, desired.version)

    def retire_release(self, endpoint: str, release: str) -> Operation:
        paths = self.paths(endpoint)
        check_port(paths, endpoint)
        with desired_lock(paths):
            current = read_desired(paths)
            if current is None or release not in current.releases:
                return Operation(
                    kind="retire_release", provider=self.name, endpoint=endpoint, release=release, done=True
                )
            if current.weights.get(release, 0) > 0:
                raise ConflictError(
                    f"release {release} still carries {current.weights[release]}% of traffic",
                    hint="route its traffic to another release first",
                )
            releases = {k: v for k, v in current.releases.items() if k != release}
            weights = {k: v for k, v in current.weights.items() if k != release}
            mirror = {k: v for k, v in current.mirror.items() if k != release}
            desired = self._write(paths, replace(current, releases=releases, weights=weights, mirror=mirror))
        self._start_supervisor(paths)
        return self._op("retire_release", endpoint, release, desired.version)

    def destroy(self, endpoint: str) -> Operation:
        paths = self.paths(endpoint)
        pid = running_pid(paths)
        if pid is None:
            stop_orphans(paths, read_lock_pid(paths))
            shutil.rmtree(paths.root, ignore_errors=True)
            return Operation(kind="destroy", provider=self.name, endpoint=endpoint, done=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        return Operation(kind="destroy", provider=self.name, endpoint=endpoint, ref={"pid": str(pid)})

    def poll(self, op: Operation) -> OperationStatus:
        if op.done:
            return OperationStatus(state="succeeded")
        paths = self.paths(op.endpoint)
        if op.kind == "destroy":
            return self._poll_destroy(op, paths)
        version = int(op.ref.get("version", "0"))
        pid, state = _live_state(paths)
        if pid is None:
            return OperationStatus(state="failed", message=f"the supervisor is not running:\n{log_tail(paths)}")
        if state is None or int(state.get("version", -1)) < version:
            return OperationStatus(state="running", message="supervisor starting", progress=0.0)
        workers = [int(p) for p in state.get("workers", [])]
        acks = read_acks(paths)
        if state.get("crash_loop") and not any(p in acks for p in workers):
            return OperationStatus(
                state="failed",
                message=f"workers crash on start ({state.get('last_exit')}):\n{log_tail(paths)}",
            )
        if len(workers) < int(state.get("desired_workers", 1)):
            return OperationStatus(state="running", message="starting workers", progress=0.0)
        done = 0
        for pid in workers:
            ack = acks.get(pid)
            if ack is None or int(ack.get("version", -1)) < version:
                continue
            if op.kind == "deploy_release" and op.release not in ack.get("loaded", []):
                error = ack.get("errors", {}).get(op.release)
                if error:
                    return OperationStatus(state="failed", message=f"release {op.release} failed to load: {error}")
                return OperationStatus(state="failed", message=f"release {op.release} is no longer desired")
            if op.kind == "retire_release" and op.release in ack.get("loaded", []):
                continue
            done += 1
        if done < len(workers):
            return OperationStatus(
                state="running",
                message=f"{done}/{len(workers)} workers applied",
                progress=done / len(workers),
            )
        return OperationStatus(state="succeeded", progress=1.0)

    def _poll_destroy(self, op: Operation, paths: Paths) -> OperationStatus:
        pid = int(op.ref.get("pid", "0"))
        if running_pid(paths) == pid:  # it still holds the lock: the pid is the supervisor's
            if time.time() - op.started_at > self.options.stop_timeout_s:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getpgid(pid) == pid:
                        os.killpg(pid, signal.SIGKILL)  # the supervisor and its workers
                    else:
                        os.kill(pid, signal.SIGKILL)
            return OperationStatus(state="running", message=f"stopping supervisor {pid}")
        stop_orphans(paths, pid)
        shutil.rmtree(paths.root, ignore_errors=True)
        return OperationStatus(state="succeeded")

    def observe(self, endpoint: str) -> Observed | None:
        paths = self.paths(endpoint)
        desired = read_desired(paths)
        if desired is None:
            return None
        pid, live = _live_state(paths)
        state = live or {}
        workers = [int(p) for p in state.get("workers", [])]
        acks = {p: a for p, a in read_acks(paths).items() if p in workers}
        releases = {}
        for rid, spec in desired.releases.items():
            loaded = sum(1 for a in acks.values() if rid in a.get("loaded", []))
            errors = [a["errors"][rid] for a in acks.values() if rid in a.get("errors", {})]
            status: Any = "ready" if pid and workers and loaded == len(workers) else "creating"
            message = None
            if errors:
                status, message = "failed", errors[0]
            elif not pid:
                status, message = "failed", "the supervisor is not running"
            releases[rid] = ObservedRelease(
                id=rid, status=status, replicas=loaded, fingerprint=spec.fingerprint, message=message
            )
        if not pid:
            ep_status: Any = "failed"
        elif any(r.status == "failed" for r in releases.values()):
            ep_status = "degraded"
        elif all(r.status == "ready" for r in releases.values()) and len(workers) == desired.workers:
            ep_status = "ready"
        else:
            ep_status = "updating" if any(r.status == "ready" for r in releases.values()) else "creating"
        meta = {"dir": str(paths.root)}
        if pid:
            meta["pid"] = str(pid)
        port = state.get("port") or remembered_port(paths, desired.host)
        if port:
            meta["port"] = str(port)  # the port it keeps, also while stopped
        return Observed(
            endpoint=endpoint,
            url=state.get("url"),
            status=ep_status,
            releases=releases,
            traffic=Traffic(weights=dict(desired.weights), mirror=dict(desired.mirror)),
            replicas=len(workers),
            meta=meta,
        )

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        agg = aggregate(read_snapshots(self.paths(endpoint).metrics), window_s).get(release)
        if agg is None:
            return Metrics(release=release, window_s=window_s)
        return Metrics(
            release=release,
            window_s=window_s,
            requests=agg.requests,
            errors=agg.errors,
            p50_ms=agg.percentile(0.5),
            p99_ms=agg.percentile(0.99),
        )

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        paths = self.paths(endpoint)
        _, state = _live_state(paths)
        if state is None or not state.get("url"):
            raise NotFoundError(f"local endpoint {endpoint!r} is not running")
        desired = read_desired(paths)
        url = urlsplit(state["url"])
        headers = {"content-type": "application/json"}
        if desired is not None and desired.token:
            headers["authorization"] = f"Bearer {desired.token}"
        if release is not None:
            headers["x-deployer-release"] = release
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=self.options.request_timeout_s)
        start = time.perf_counter()
        try:
            conn.request("POST", "/predict", body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise TransientError(f"local endpoint {endpoint!r} did not answer: {e}") from e
        finally:
            conn.close()
        latency = (time.perf_counter() - start) * 1000.0
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = raw.decode(errors="replace")
        return Response(status=resp.status, body=data, release=resp.getheader("x-deployer-release"), latency_ms=latency)


def _check_mirror(mirror: dict[str, int], releases: dict[str, ReleaseSpec]) -> None:
    unknown = sorted(set(mirror) - set(releases))
    if unknown:
        raise NotFoundError(f"cannot mirror traffic to releases that are not deployed: {', '.join(unknown)}")
