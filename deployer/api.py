"""The Python API: the verbs of the CLI as functions, and the :class:`Endpoint` handle.

``deployer.deploy(model, name=...)`` takes a fitted model object, a model file or directory, or a
spec file, and returns a live :class:`Endpoint`. The other verbs take an endpoint name and find its
provider and target in the ledger.
"""

from __future__ import annotations

import builtins
import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployer.engine import Engine, Outcome
from deployer.errors import NotFoundError, SpecError
from deployer.events import EventFn
from deployer.ledger import EndpointRow, ReleaseRow
from deployer.paths import home
from deployer.planning import Plan
from deployer.protocols import LedgerStore, Provider, ProviderContext
from deployer.records import ArtifactRef, Capabilities, Observed, Release
from deployer.rollout import check_strategy
from deployer.secrets import redact_options, revealed
from deployer.spec import Autoscaling, Spec, StateBackend, Target

if TYPE_CHECKING:
    from deployer.containers import Built

# ---- context ------------------------------------------------------------------------------------


def make_provider(target: Target, options: dict[str, Any]) -> Provider:
    """Construct the provider named by ``target`` with its typed options (no network call)."""
    from pydantic import ValidationError

    from deployer.config import spec_error
    from deployer.registry import provider_class

    cls = provider_class(target.provider)
    try:
        opts = cls.Options.model_validate(options or {})
    except ValidationError as e:
        raise spec_error(e).under("provider_options") from None
    provider: Provider = cls(ProviderContext(target=target, options=opts, home=home()))
    return provider


def open_ledger(state: str | None = None) -> LedgerStore:
    """The ledger ``state`` names: a SQLite file or a shared ledger URI (see :mod:`deployer.ledgers.select`)."""
    from deployer.ledgers.select import open_store

    return open_store(state)


def provider_for(ledger: LedgerStore, name: str) -> tuple[EndpointRow, Provider]:
    """The ledger's row for endpoint ``name`` and its provider, built from the target and options the
    ledger recorded when it was deployed (no network call). The verbs that take an endpoint name
    (status, rollback, scale, destroy, guard) start here.

    Raises :class:`NotFoundError` naming the endpoints this ledger knows.
    """
    row = ledger.endpoint(name)
    if row is None:
        known = ", ".join(e.name for e in ledger.endpoints()) or "none"
        raise NotFoundError(
            f"no endpoint named {name!r} in the ledger at {ledger.path} (known: {known})",
            hint="check the name, or point --state / DEPLOYER_HOME at the right ledger",
        )
    target = Target.model_validate({k: v for k, v in row.target.items() if k != "options"})
    return row, make_provider(target, revealed(row.target.get("options") or {}))


_provider_for = provider_for  # the former private name, for callers not yet moved


def to_spec(spec: Spec | str | Path, env: str | None = None) -> Spec:
    if isinstance(spec, Spec):
        return spec
    from deployer.config import load_spec

    loaded: Spec = load_spec(spec, env=env)
    return loaded


@dataclass
class Prepared:
    spec: Spec
    provider: Provider
    candidate: Release
    upload: Any
    packaged: Any = None


def prepare(
    spec: Spec, on_event: EventFn | None = None, provider: Provider | None = None, *, offline: bool = False
) -> Prepared:
    """Validate offline, package the model and find its artifact in the store. No provider writes.

    ``provider`` (default: the one ``spec.target`` names) lets tests supply an in-memory platform.
    ``offline`` skips the store lookup (the artifact is then treated as absent: the caller decides).
    """
    from deployer import artifacts
    from deployer.events import StepDone

    provider = provider or make_provider(spec.target, spec.provider_options)
    provider.validate(spec)
    check_strategy(spec, provider.capabilities)
    check_autoscaling(spec.autoscaling, provider.capabilities)
    if spec.strategy.native and not provider.capabilities.native_rollout:
        from deployer.errors import CapabilityError

        raise CapabilityError(
            f"strategy.native: {provider.capabilities.reason('native_rollout')}",
            hint="remove strategy.native to let deployer run the rollout",
        )
    artifact: ArtifactRef | None = None
    upload = None
    packaged = None
    source: Path | None = Path(spec.model.path) if spec.model.path is not None else None
    if spec.model.uri is not None:
        from deployer.sources import fetch

        want = spec.model.digest.removeprefix("sha256:") if spec.model.digest else None
        source = fetch(spec.model.uri, want, home(), on_progress=_reporter(spec, on_event, "download")).path
        if source.is_dir() and (source / "MLmodel").is_file():
            from deployer.mlflow_source import served_as

            spec = served_as(spec, source)  # an MLflow model: its MLmodel file says how it is served
    if source is not None or spec.model.obj is not None:
        packaged = (
            artifacts.identify(source, serving=spec.serving, flavor=spec.model.flavor)
            if source is not None
            else artifacts.identify_object(spec.model.obj, serving=spec.serving)
        )
        for note in packaged.notes:
            if on_event:
                on_event(StepDone(spec.name, step="package", outcome="ok", detail=note))
        store = provider.store()
        found = None if offline else store.find(packaged.digest)
        artifact = found or ArtifactRef(digest=packaged.digest, uri="", size=packaged.size)
        if found is None:
            report = _reporter(spec, on_event, "upload")
            model = packaged

            def upload() -> ArtifactRef:
                return artifacts.upload(model, store, on_progress=report)
    options_model = getattr(provider, "Options", None)
    candidate = Release(
        id="r0000",
        endpoint=spec.name,
        fingerprint=spec.runtime_fingerprint(artifact.digest if artifact else None),
        artifact=artifact,
        flavor=spec.model.flavor,
        entrypoint=spec.model.entrypoint,
        image=spec.model.image,
        resources=spec.resources,
        autoscaling=spec.autoscaling,
        tags=spec.tags,
        options=redact_options(spec.provider_options, options_model),
    )
    return Prepared(spec, provider, candidate, upload, packaged)


def check_autoscaling(autoscaling: Autoscaling | None, caps: Capabilities) -> None:
    """Refuse (offline, :class:`CapabilityError`, exit 2) autoscaling the provider cannot do: scaling to zero
    without ``capabilities.scale_to_zero``. The one check of both the spec path and ``scale``."""
    from deployer.errors import CapabilityError

    if autoscaling is not None and (autoscaling.scale_to_zero or autoscaling.min == 0) and not caps.scale_to_zero:
        raise CapabilityError(
            f"autoscaling.min 0 (scale to zero): {caps.reason('scale_to_zero')}",
            hint="keep at least one replica (min 1), or destroy the endpoint to free it",
        )


def _reporter(spec: Spec, on_event: EventFn | None, task: str) -> Any:
    """A (done, total) callback that emits :class:`~deployer.events.Progress` for ``task``."""
    from deployer.events import Progress

    def report(done: int, total: int) -> None:
        if on_event:
            on_event(Progress(spec.name, task=task, done=done, total=total))

    return report


# ---- verbs --------------------------------------------------------------------------------------


def apply(
    spec: Spec | str | Path, *, env: str | None = None, on_event: EventFn | None = None, timeout_s: float = 1800.0
) -> Endpoint:
    """Converge the endpoint to ``spec`` (plan + apply under the endpoint lock); return its handle."""
    outcome = apply_outcome(spec, env=env, on_event=on_event, timeout_s=timeout_s)
    return Endpoint(outcome.endpoint, state=to_spec(spec, env).state.where(), last=outcome)


def apply_outcome(
    spec: Spec | str | Path, *, env: str | None = None, on_event: EventFn | None = None, timeout_s: float = 1800.0
) -> Outcome:
    s = to_spec(spec, env)
    prep = prepare(s, on_event)
    ledger = open_ledger(s.state.where())
    try:
        with ledger.lock(s.name, "deploy"):
            engine = Engine(prep.provider, ledger, on_event=on_event, timeout_s=timeout_s)
            return engine.deploy(s, prep.candidate, prep.upload)
    finally:
        ledger.close()


def adopt(name: str, *, spec: Spec | str | Path, env: str | None = None, on_event: EventFn | None = None) -> Outcome:
    """Take over endpoint ``name`` into this ledger: record the releases it serves (see :mod:`deployer.adoption`).

    ``spec`` is the endpoint's spec (its ``name`` must be ``name``; its ``state`` picks the ledger).
    The outcome's ``notes`` explain a live release that does not match the spec and what ``deploy`` will do.
    """
    from deployer.adoption import adopt as adopt_endpoint

    s = to_spec(spec, env)
    if s.name != name:
        raise SpecError("name", f"the spec is for endpoint {s.name!r}, not {name!r}", fix=f"pass the spec of {name!r}")
    prep = prepare(s, on_event)
    ledger = open_ledger(s.state.where())
    try:
        with ledger.lock(name, "adopt"):
            engine = Engine(prep.provider, ledger, on_event=on_event)
            return adopt_endpoint(engine, s, prep.candidate, prep.upload)
    finally:
        ledger.close()


def plan(
    spec: Spec | str | Path, *, env: str | None = None, on_event: EventFn | None = None, offline: bool = False
) -> Plan:
    """What ``apply`` would do. Reads the provider and ledger; writes nothing.

    Raises :class:`~deployer.errors.ConflictError` when the endpoint serves releases this ledger does not know.
    ``on_event`` receives the :class:`~deployer.events.Retrying` events of those reads.

    ``offline`` makes no call to the provider or its artifact store: the plan compares the spec with what
    the ledger last recorded (running releases, traffic, artifacts uploaded), so drift made outside deployer
    and releases another ledger made are not seen. The ledger itself is still read (over the network
    when it is a shared one), and a ``model.uri`` is resolved through the source cache.
    """
    from deployer.planning import make_plan

    s = to_spec(spec, env)
    prep = prepare(s, offline=offline)
    ledger = open_ledger(s.state.where())
    try:
        engine = Engine(prep.provider, ledger, on_event=on_event)
        if not offline:
            observed = engine.observe_owned(s.name)
            return make_plan(s, prep.candidate, observed, engine.head(s.name), artifact_present=prep.upload is None)
        rows = ledger.releases(s.name)
        digest = prep.candidate.artifact.digest if prep.candidate.artifact else None
        present = digest is None or any(r.artifact_digest == digest and not r.artifact_pruned for r in rows)
        recorded = _as_recorded(ledger.endpoint(s.name), rows)
        return make_plan(s, prep.candidate, recorded, engine.head(s.name), artifact_present=present)
    finally:
        ledger.close()


def _as_recorded(row: EndpointRow | None, releases: list[ReleaseRow]) -> Observed | None:
    """What the ledger last recorded of an endpoint, in the provider's shape (``plan --offline``)."""
    from deployer.records import ObservedRelease

    if row is None or row.destroyed_at is not None:
        return None
    running = {
        r.id: ObservedRelease(id=r.id, status="ready", fingerprint=r.fingerprint) for r in releases if r.running
    }
    return Observed(endpoint=row.name, url=row.url, releases=running, traffic=row.traffic)


def deploy(
    model: Any,
    *,
    name: str | None = None,
    target: str | Target = "local",
    flavor: str | None = None,
    entrypoint: str | None = None,
    replicas: int = 1,
    strategy: dict[str, Any] | str | None = None,
    autoscaling: dict[str, Any] | None = None,
    gates: list[dict[str, Any]] | None = None,
    tags: dict[str, str] | None = None,
    provider_options: dict[str, Any] | None = None,
    env: str | None = None,
    state: str | None = None,
    on_event: EventFn | None = None,
    timeout_s: float = 1800.0,
) -> Endpoint:
    """Deploy ``model`` and return a live :class:`Endpoint`.

    ``model`` is a fitted model object (serialised with joblib), a path to a model file or
    directory, or a path to a spec YAML file (then the other arguments must be left out).
    """
    from pydantic import ValidationError

    from deployer.config import spec_error

    if isinstance(model, str | Path) and str(model).endswith((".yaml", ".yml")):
        return apply(model, env=env, on_event=on_event, timeout_s=timeout_s)
    if not name:
        raise SpecError("name", "deploy() needs a name for the endpoint", fix="pass name='churn'")
    source: dict[str, Any] = {"flavor": flavor or _guess_flavor(model)}
    if entrypoint:
        source["entrypoint"] = entrypoint
    if isinstance(model, str | Path):
        source["path"] = str(Path(model).expanduser().resolve())
    else:
        source["obj"] = model
    tgt = target if isinstance(target, Target) else Target(provider=target)
    data: dict[str, Any] = {
        "name": name,
        "target": tgt.model_dump(),
        "model": source,
        "resources": {"replicas": replicas},
        "strategy": {"type": strategy} if isinstance(strategy, str) else (strategy or {}),
        "autoscaling": autoscaling,
        "gates": gates or [],
        "tags": tags or {},
        "provider_options": provider_options or {},
        "state": StateBackend.named(state).model_dump(exclude_none=True),
    }
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise spec_error(e) from None
    if spec.model.path and not Path(spec.model.path).exists():
        raise SpecError(
            "model.path", f"{spec.model.path} does not exist", fix="pass an existing file or a model object"
        )
    return apply(spec, on_event=on_event, timeout_s=timeout_s)


def _guess_flavor(model: Any) -> str:
    if isinstance(model, str | Path) and str(model).endswith(".onnx"):
        return "onnx"
    return "sklearn"


STATUS_EXIT_CODES = {"ready": 0, "updating": 0, "creating": 14, "degraded": 14, "failed": 15, "absent": 16}
"""``deployer status`` exits with the endpoint's health (docs/exit-codes.md): serving as asked 0 (``updating``
still serves), degraded 14, failed 15, absent 16."""


@dataclass(frozen=True)
class Status:
    """The endpoint as the ledger and the provider see it. ``releases`` lists each release that runs, is live,
    is being deployed or failed and still runs (until retired), with its own replicas and traffic; one the
    ledger expects but the provider no longer has is ``gone``."""

    endpoint: str
    provider: str
    url: str | None
    live: str | None
    traffic: dict[str, int]
    observed: Observed | None
    lock_holder: str | None
    releases: list[dict[str, Any]]
    lease: dict[str, Any] | None = None
    """The endpoint lock's lease as stored (``live`` False: its holder stopped renewing; it is stale)."""

    @property
    def health(self) -> str:
        return self.observed.status if self.observed else "absent"

    @property
    def exit_code(self) -> int:
        return STATUS_EXIT_CODES[self.health]

    def to_dict(self) -> dict[str, Any]:
        live = self.observed.releases.get(self.live or "") if self.observed else None
        return {
            "endpoint": self.endpoint,
            "provider": self.provider,
            "url": self.url,
            "live": self.live,
            "traffic": self.traffic,
            "lock_holder": self.lock_holder,
            "lease": self.lease,
            "health": self.health,
            "replicas": live.replicas if live else 0,
            "releases": self.releases,
            "exit_code": self.exit_code,
        }


def status(name: str, *, state: str | None = None) -> Status:
    """The endpoint as the ledger and the provider see it now (replicas per release, never summed)."""
    ledger = open_ledger(state)
    try:
        row, provider = provider_for(ledger, name)
        observed = provider.observe(name) if row.destroyed_at is None else None
        live = ledger.live_release(name)
        weights = observed.traffic.weights if observed else {}
        rels = []
        for r in ledger.releases(name):
            seen = observed.releases.get(r.id) if observed else None
            if not (r.running or seen or r.status in ("live", "deploying")):
                continue
            rels.append(
                {
                    "id": r.id,
                    "status": r.status,
                    "provider_status": seen.status if seen else "gone",
                    "replicas": seen.replicas if seen else 0,
                    "weight": weights.get(r.id, 0),
                    "reason": (seen.message if seen and seen.message else None)
                    or (r.reason if r.status in ("failed", "rolled_back") else None),
                }
            )
        return Status(
            name,
            row.provider,
            observed.url if observed else None,
            live.id if live else None,
            dict(weights),
            observed,
            ledger.lock_holder(name),
            rels,
            _lease(ledger, name),
        )
    finally:
        ledger.close()


def _lease(ledger: LedgerStore, name: str) -> dict[str, Any] | None:
    import time

    lease = ledger.lease(name)
    return {**lease.to_dict(), "holder": lease.holder, "live": lease.live(time.time())} if lease else None


def export_history(name: str, *, state: str | None = None) -> dict[str, Any]:
    """The endpoint's whole history as JSON-ready data: its row, every release, every journal entry
    (what ``deployer history --json`` prints and ``deployer ledger push`` moves)."""
    from deployer.ledgers.transfer import export

    ledger = open_ledger(state)
    try:
        return export(ledger, name)
    finally:
        ledger.close()


def history(name: str, *, state: str | None = None) -> list[ReleaseRow]:
    """Every release of the endpoint, oldest first, with outcome, actor and evidence."""
    ledger = open_ledger(state)
    try:
        if ledger.endpoint(name) is None:
            provider_for(ledger, name)
        return ledger.releases(name)
    finally:
        ledger.close()


def _with_engine(name: str, state: str | None, purpose: str, on_event: EventFn | None, fn: Any) -> Outcome:
    ledger = open_ledger(state)
    try:
        _, provider = provider_for(ledger, name)
        with ledger.lock(name, purpose):
            result: Outcome = fn(Engine(provider, ledger, on_event=on_event))
            return result
    finally:
        ledger.close()


def rollback(
    name: str,
    *,
    to: str | None = None,
    state: str | None = None,
    on_event: EventFn | None = None,
    reason: str = "manual rollback",
) -> Outcome:
    """Serve the previous good release (or ``to``) again: one route when it still runs."""
    return _with_engine(name, state, "rollback", on_event, lambda e: e.rollback(name, to=to, reason=reason))


def scale(
    name: str,
    *,
    min: int,
    max: int | None = None,
    target_value: float | None = None,
    state: str | None = None,
    on_event: EventFn | None = None,
) -> Outcome:
    """Set the replica bounds of the live release, with the spec path's capability checks
    (:func:`check_autoscaling`: ``min=0`` without scale to zero is a :class:`CapabilityError`)."""
    from pydantic import ValidationError

    from deployer.config import spec_error

    try:
        auto = Autoscaling.model_validate(
            {
                "min": min,
                "max": max if max is not None else builtins.max(min, 1),
                "scale_to_zero": min == 0,
                **({"target_value": target_value} if target_value else {}),
            }
        )
    except ValidationError as e:
        raise spec_error(e).under("autoscaling") from None

    def scale_checked(e: Engine) -> Outcome:
        check_autoscaling(auto, e.provider.capabilities)
        return e.scale(name, auto)

    return _with_engine(name, state, "scale", on_event, scale_checked)


def destroy(name: str, *, state: str | None = None, on_event: EventFn | None = None) -> Outcome:
    """Remove the endpoint's compute. Artifacts and the ledger's history stay."""
    return _with_engine(name, state, "destroy", on_event, lambda e: e.destroy(name))


# ---- the handle ---------------------------------------------------------------------------------


def build(
    spec: Spec | str | Path,
    *,
    env: str | None = None,
    out: str | Path | None = None,
    tag: str | None = None,
    base_image: str | None = None,
    wheelhouse: bool = False,
    push: bool = False,
    engine: str | None = None,
    offline: bool = False,
    on_event: EventFn | None = None,
) -> Built:
    """A container image of the spec's model (see :mod:`deployer.containers`): its build context written
    (into ``out`` when given), built and tagged when Docker or Podman is present, pushed with ``push``.

    Returns a :class:`deployer.containers.Built`. Touches no endpoint and no ledger.
    """
    from deployer import containers

    return containers.build(
        to_spec(spec, env),
        out=Path(out) if out is not None else None,
        tag=tag,
        base_image=base_image,
        wheelhouse=wheelhouse,
        push=push,
        engine=engine,
        offline=offline,
        on_event=on_event,
    )


class Endpoint:
    """A live endpoint: call ``predict`` on it, or manage it with the verbs as methods."""

    def __init__(self, name: str, *, state: str | None = None, last: Outcome | None = None) -> None:
        self.name = name
        self.state = state
        self.last = last

    @property
    def url(self) -> str | None:
        return self.status().url

    def predict(self, rows: Any, *, release: str | None = None) -> Any:
        """Send rows (a list of feature lists, or a numpy array) and return the predictions."""
        if hasattr(rows, "tolist"):
            rows = rows.tolist()
        ledger = open_ledger(self.state)
        try:
            _, provider = provider_for(ledger, self.name)
        finally:
            ledger.close()
        resp = provider.invoke(self.name, rows, release=release)
        if resp.status >= 400:
            from deployer.errors import ProviderError

            raise ProviderError(f"{self.name} answered {resp.status}: {resp.body}")
        body = resp.body
        return body["predictions"] if isinstance(body, dict) and "predictions" in body else body

    def status(self) -> Status:
        return status(self.name, state=self.state)

    def history(self) -> list[ReleaseRow]:
        return history(self.name, state=self.state)

    def rollback(self, to: str | None = None) -> Outcome:
        return rollback(self.name, to=to, state=self.state)

    def scale(self, min: int, max: int | None = None) -> Outcome:
        return scale(self.name, min=min, max=max, state=self.state)

    def destroy(self) -> Outcome:
        return destroy(self.name, state=self.state)

    def __repr__(self) -> str:
        try:
            s = self.status()
            return f"<Endpoint {self.name} [{s.provider}] live={s.live} traffic={s.traffic} url={s.url}>"
        except Exception:  # noqa: BLE001 - a repr must not raise
            return f"<Endpoint {self.name}>"

    def _repr_html_(self) -> str:
        s = self.status()
        rows = "".join(
            f"<tr><td>{html.escape(r['id'])}</td><td>{html.escape(str(r['status']))}</td><td>{r['weight']}%</td></tr>"
            for r in s.releases
        )
        return (
            f"<div><b>Endpoint {html.escape(self.name)}</b> on <code>{html.escape(s.provider)}</code> "
            f"&middot; <a href='{html.escape(s.url or '')}'>{html.escape(s.url or 'not serving')}</a>"
            f"<table><tr><th>release</th><th>status</th><th>traffic</th></tr>{rows}</table></div>"
        )
