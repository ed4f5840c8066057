"""The ``deployer`` command line.

Built on click (rich is imported only when there is progress to draw), so ``deployer --help``
stays well under 0.15 s and imports no cloud SDK. Every command takes ``--json``: events stream
to stdout as JSON lines and the result is the last line (``{"kind": "result", ...}``).

Exit codes (also in docs/exit-codes.md):

==== =====================================================================
0    success (or: nothing to change)
1    unexpected error
2    invalid input: spec, options, unknown provider, unsupported capability
3    the provider or the artifact store failed
4    a health gate failed; traffic was sent back to the previous release
5    an operation did not finish before its deadline
6    another process holds the endpoint lock
7    the ledger cannot answer / nothing to roll back to
8    done, but cleanup failed: the new release is live; retiring or pruning after it failed (journaled)
10   guard: the release was unhealthy and was rolled back
11   guard: the release is unhealthy and there is nothing to roll back to
12   guard: inconclusive (reachable and judged, but too little traffic)
13   guard: endpoint down (refused, unreachable or failed) and no running release to roll back to
14   status: degraded (a release failed or is still being created)
15   status: failed (nothing serves)
16   status: absent (the provider has no such endpoint)
130  interrupted
==== =====================================================================
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from deployer.cli_ledger import register as register_ledger_commands
from deployer.errors import DeployerError
from deployer.render import Renderer

EXIT_INTERRUPTED = 130
EXIT_CLEANUP_FAILED = 8


def outcome_code(outcome: str) -> int:
    """The exit code of a verb that returned: 8 when the change succeeded but its cleanup failed."""
    return EXIT_CLEANUP_FAILED if outcome == "cleanup_failed" else 0


def run(as_json: bool, fn: Callable[[Renderer], int | None]) -> None:
    """Run a command body, mapping deployer errors to one line on stderr and an exit code."""
    r = Renderer(as_json)
    code = 0
    try:
        code = fn(r) or 0
    except DeployerError as e:
        r.close()
        line = str(e).replace("\n", " ")
        if as_json:
            click.echo(json.dumps({"kind": "error", **e.to_dict()}))
        click.echo(f"error: {line}", err=True)
        code = e.exit_code
    except KeyboardInterrupt:
        r.close()
        click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    finally:
        r.close()
    sys.exit(code)


json_opt = click.option("--json", "as_json", is_flag=True, help="Stream events and the result as JSON lines.")
env_opt = click.option("--env", "env", default=None, help="Apply the spec's named environment overlay.")
state_opt = click.option(
    "--state",
    default=None,
    help="Ledger: a SQLite file or a URI (file://, s3://, gs://, az://); default $DEPLOYER_STATE, else "
    "$DEPLOYER_HOME/ledger.db.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mldeployer", prog_name="deployer")
def cli() -> None:
    """Deploy ML models as safe, autoscaling endpoints: local, AWS SageMaker, GCP Vertex AI, Azure ML."""


@cli.command()
@click.argument("spec", type=click.Path())
@env_opt
@json_opt
@click.option(
    "--timeout",
    default=1800.0,
    show_default=True,
    help="Deadline in seconds for each wait (a release becoming ready: the lower of this and "
    "strategy.ready_timeout_s).",
)
def deploy(spec: str, env: str | None, as_json: bool, timeout: float) -> None:
    """Plan and apply SPEC: roll out a new release if anything changed."""

    def body(r: Renderer) -> int:
        from deployer import api

        r.resume_with = f"deployer deploy {spec}" + (f" --env {env}" if env else "")
        out = api.apply_outcome(spec, env=env, on_event=r, timeout_s=timeout)

        def human() -> None:
            if out.outcome == "unchanged":
                r.out.print(f"[green]{out.endpoint} is up to date[/] (release {out.release}) {out.url or ''}")
            else:
                r.out.print(f"[green]{out.endpoint}: {out.release} {out.outcome}[/] {out.url or ''}")
            for line in out.cleanup_errors:
                r.out.print(f"[yellow]  cleanup failed: {line}[/] (run the same deploy again to retry)")

        r.result(out.to_dict(), human)
        return outcome_code(out.outcome)

    run(as_json, body)


@cli.command()
@click.argument("spec", type=click.Path())
@env_opt
@json_opt
@click.option(
    "--offline", is_flag=True, help="No call to the provider or its store: compare with what the ledger recorded."
)
def plan(spec: str, env: str | None, as_json: bool, offline: bool) -> None:
    """Show what `deploy` would change. Writes nothing."""

    def body(r: Renderer) -> None:
        from deployer import api

        p = api.plan(spec, env=env, on_event=r, offline=offline)

        def human() -> None:
            if p.noop:
                r.out.print(f"{p.endpoint}: no changes")
            for line in p.diff:
                r.out.print(line)
            for i, s in enumerate(p.steps, 1):
                r.out.print(f"  {i}. {s.describe()}")

        r.result(p.to_dict(), human)

    run(as_json, body)


@cli.command()
@click.argument("spec", type=click.Path())
@env_opt
@click.option("--out", type=click.Path(), default=None, help="Write the build context here and keep it.")
@click.option("--tag", default=None, help="Image name (default: deployer/<endpoint>:<context sha256[:12]>).")
@click.option("--base-image", default=None, help="The Dockerfile's BASE_IMAGE (default: python:<model's>-slim).")
@click.option("--wheelhouse", is_flag=True, help="Download every wheel on this machine with pip; install offline.")
@click.option("--offline", is_flag=True, help="Build with no network (--network none; needs --wheelhouse).")
@click.option("--push", is_flag=True, help="Push --tag to its registry after the build.")
@click.option("--engine", default=None, help="docker or podman (default: whichever is installed).")
@json_opt
def build(
    spec: str,
    env: str | None,
    out: str | None,
    tag: str | None,
    base_image: str | None,
    wheelhouse: bool,
    offline: bool,
    push: bool,
    engine: str | None,
    as_json: bool,
) -> None:
    """Build a container image of the spec's model (serves SageMaker, Vertex AI, Azure ML and KServe)."""

    def body(r: Renderer) -> None:
        from deployer import api

        built = api.build(
            spec, env=env, out=out, tag=tag, base_image=base_image, wheelhouse=wheelhouse,
            push=push, engine=engine, offline=offline, on_event=r,
        )  # fmt: skip
        result = {
            "image": built.image,
            "engine": built.engine,
            "pushed": built.pushed,
            "context": str(built.context.path) if out else None,
            "context_sha256": built.context.digest,
            "artifact_sha256": built.context.artifact,
            "requirements": list(built.context.requirements),
        }

        def human() -> None:
            if built.image:
                r.console.print(f"built {built.image}" + (" and pushed it" if built.pushed else ""))
            else:
                r.console.print(f"no docker or podman here: build context written to {out}")

        r.result(result, human)

    run(as_json, body)


@cli.command()
@click.argument("name")
@state_opt
@json_opt
def status(name: str, state: str | None, as_json: bool) -> None:
    """Show the endpoint's live release, traffic, replicas and health of each release.

    Exit codes: 0 serving (ready or updating), 14 degraded (or still creating), 15 failed, 16 absent.
    """

    def body(r: Renderer) -> int:
        from deployer import api

        s = api.status(name, state=state)

        def human() -> None:
            d = s.to_dict()
            r.out.print(f"[bold]{name}[/] on {s.provider}: {s.health}  {s.url or '(no url)'}")
            if s.live and s.health in ("failed", "absent"):
                r.out.print(f"  live: {s.live} (not serving: the endpoint is {s.health})")
            elif s.live:
                r.out.print(f"  live: {s.live}   replicas: {d['replicas']}")
            else:
                r.out.print("  live: none (nothing serving)")
            for rel in s.releases:
                n = rel["replicas"]
                line = (
                    f"  {rel['id']}  {rel['status']:<11} {rel['provider_status']:<9} {rel['weight']:>3}%  "
                    f"{n} replica{'' if n == 1 else 's'}"
                )
                r.out.print(line + (f"  ({rel['reason']})" if rel["reason"] else ""), markup=False)
            if s.lease and s.lease["live"]:
                r.out.print(f"  locked by {s.lease['holder']}", markup=False)
            elif s.lease:
                import time

                expired = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(s.lease["expires_at"]))
                r.out.print(
                    f"  lock: stale, expired at {expired} (held by {s.lease['actor']} pid {s.lease['pid']})",
                    markup=False,
                )

        r.result(s.to_dict(), human)
        return s.exit_code

    run(as_json, body)


@cli.command()
@click.argument("name")
@state_opt
@json_opt
def history(name: str, state: str | None, as_json: bool) -> None:
    """List every release with its outcome and who made it."""

    def body(r: Renderer) -> None:
        import time

        from deployer import api

        rows = api.history(name, state=state)

        def human() -> None:
            r.table(
                ["release", "status", "outcome", "actor", "created", "artifact", "reason"],
                [
                    [
                        x.id,
                        x.status,
                        x.outcome or "",
                        x.actor,
                        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(x.created_at)),
                        (x.artifact_digest or "")[:12],
                        x.reason or "",
                    ]
                    for x in rows
                ],
            )

        if r.as_json:  # the whole audit trail: the endpoint row, every release, every journal entry
            exported = api.export_history(name, state=state)
            r.result({**exported, "endpoint": name, "row": exported["endpoint"]}, human)
        else:
            r.result({"endpoint": name, "releases": [x.to_dict() for x in rows]}, human)

    run(as_json, body)


@cli.command()
@click.argument("name")
@click.option("--to", "to", default=None, help="Release id to roll back to (default: the previous good one).")
@state_opt
@json_opt
def rollback(name: str, to: str | None, state: str | None, as_json: bool) -> None:
    """Serve the previous good release again."""

    def body(r: Renderer) -> int:
        from deployer import api

        out = api.rollback(name, to=to, state=state, on_event=r)

        def human() -> None:
            r.out.print(f"{name}: {out.release} is live ({out.outcome})")
            for note in out.notes:
                r.out.print(f"  {note}", markup=False)

        r.result(out.to_dict(), human)
        return outcome_code(out.outcome)

    run(as_json, body)


@cli.command()
@click.argument("name")
@click.option("--spec", "spec", type=click.Path(), required=True, help="The endpoint's spec file.")
@env_opt
@json_opt
def adopt(name: str, spec: str, env: str | None, as_json: bool) -> None:
    """Take over endpoint NAME, made with another ledger, into this one (journaled with who and where)."""

    def body(r: Renderer) -> None:
        from deployer import api

        out = api.adopt(name, spec=spec, env=env, on_event=r)

        def human() -> None:
            r.out.print(f"[green]{name}: adopted, {out.release} is live[/] {out.url or ''}")
            for note in out.notes:
                r.out.print(f"  {note}")

        r.result(out.to_dict(), human)

    run(as_json, body)


@cli.command()
@click.argument("name")
@click.option("--min", "min_", type=int, required=True, help="Fewest replicas.")
@click.option("--max", "max_", type=int, default=None, help="Most replicas (default: min).")
@state_opt
@json_opt
def scale(name: str, min_: int, max_: int | None, state: str | None, as_json: bool) -> None:
    """Set the replica bounds of the live release."""

    def body(r: Renderer) -> None:
        from deployer import api

        out = api.scale(name, min=min_, max=max_, state=state, on_event=r)
        top = max_ if max_ is not None else max(min_, 1)
        r.result(out.to_dict(), lambda: r.out.print(f"{name}: {out.release} scaled to {min_}..{top}"))

    run(as_json, body)


@cli.command()
@click.argument("name")
@state_opt
@json_opt
def destroy(name: str, state: str | None, as_json: bool) -> None:
    """Remove the endpoint's compute (artifacts and history stay)."""

    def body(r: Renderer) -> None:
        from deployer import api

        out = api.destroy(name, state=state, on_event=r)
        r.result(out.to_dict(), lambda: r.out.print(f"{name} destroyed"))

    run(as_json, body)


@cli.command()
@click.argument("name")
@click.option("--max-error-rate", type=float, default=None, help="Fail when errors/requests exceeds this.")
@click.option("--max-p99-ms", type=float, default=None, help="Fail when p99 latency exceeds this many ms.")
@click.option("--window", default="10m", show_default=True, help="How far back to judge: 30s, 10m, 1h.")
@click.option("--min-samples", type=int, default=20, show_default=True, help="Requests needed to judge a metric.")
@click.option("--gates-from", type=click.Path(), default=None, help="Also evaluate the gates of this spec file.")
@click.option(
    "--probe",
    default=None,
    help="JSON payload sent to each serving release (default: the first smoke gate's payload of --gates-from).",
)
@click.option("--notify", "notify_url", default=None, help="Slack-compatible webhook called on rollback.")
@state_opt
@json_opt
def guard(
    name: str,
    max_error_rate: float | None,
    max_p99_ms: float | None,
    window: str,
    min_samples: int,
    gates_from: str | None,
    probe: str | None,
    notify_url: str | None,
    state: str | None,
    as_json: bool,
) -> None:
    """Probe and judge every serving release over a window; roll back what fails (for cron and CI schedules).

    Exit codes: 0 healthy, 10 rolled back, 11 unhealthy with nothing to roll back to,
    12 inconclusive (reachable, too little traffic), 13 endpoint down, 6 another operation holds the lock,
    3 blind (no credentials, control plane or metrics unreachable).
    """

    def body(r: Renderer) -> int:
        from deployer.errors import SpecError
        from deployer.guards import guard as run_guard

        try:
            payload = json.loads(probe) if probe is not None else None
        except ValueError as e:
            fix = "pass a JSON payload, e.g. --probe '[[1, 2, 3, 4]]'"
            raise SpecError("--probe", f"not JSON: {e}", fix=fix) from None
        rep = run_guard(
            name,
            max_error_rate=max_error_rate,
            max_p99_ms=max_p99_ms,
            window=window,
            min_samples=min_samples,
            gates_from=gates_from,
            probe=payload,
            notify_url=notify_url,
            state=state,
            on_event=r,
        )

        def human() -> None:
            r.out.print(
                f"{name}: {rep.outcome}"
                + (f" (release {rep.release})" if rep.release else "")
                + (f" -> {rep.rolled_back_to}" if rep.rolled_back_to else "")
                + (f": {rep.reason}" if rep.reason else ""),
                markup=False,
            )
            for v in rep.releases:
                r.out.print(
                    f"  {v.id}  {v.weight:>3}%  {v.role:<9} {v.verdict}" + (f"  {v.reason}" if v.reason else ""),
                    markup=False,
                )

        r.result(rep.to_dict(), human)
        return rep.exit_code

    run(as_json, body)


@cli.command()
@click.argument("spec", type=click.Path())
@env_opt
@click.option("--port", type=int, default=None, help="Port (default: the spec's provider_options.port or 8080).")
@click.option("--host", default=None, help="Interface (default: the spec's provider_options.host or 127.0.0.1); "
              "anything but loopback needs a token ($DEPLOYER_LOCAL_TOKEN or provider_options.token).")
def serve(spec: str, env: str | None, port: int | None, host: str | None) -> None:
    """Serve SPEC's model on this machine in the foreground until Ctrl-C (no ledger, no packaging)."""

    def body(r: Renderer) -> int:
        from pathlib import Path

        from deployer import config
        from deployer.errors import CapabilityError

        data = config.resolve(config.read_yaml(Path(spec)), env_name=env, base_dir=Path(spec).parent.resolve())
        model = data.get("model") or {}
        flavor = model.get("flavor", "sklearn") if isinstance(model, dict) else "sklearn"
        if isinstance(model, dict) and model.get("path") and flavor in ("sklearn", "onnx"):
            import threading

            from deployer.serving.loader import preload_model

            # import the model library while the spec is validated
            threading.Thread(target=preload_model, args=(model["path"], flavor), daemon=True).start()
        s = config.validate(data)
        if s.target.provider != "local":
            raise CapabilityError(
                f"serve runs models on this machine; {spec} targets {s.target.provider!r}",
                hint="use `deployer deploy` for cloud targets",
            )
        if s.model.path is None:
            raise CapabilityError("serve needs model.path", hint="set model.path to a model file or directory")
        from deployer.local.provider import LocalProvider
        from deployer.local.serve import serve_path
        from deployer.secrets import reveal

        opts = LocalProvider._parse(s.provider_options, "provider_options")
        return serve_path(
            s.model.path,
            flavor=s.model.flavor,
            entrypoint=s.model.entrypoint,
            host=host or opts.host,
            port=port or opts.port or 8080,
            workers=s.resources.replicas,
            token=reveal(opts.token),
            name=s.name,
        )

    run(False, body)


@cli.command("iam-policy")
@click.argument("provider")
@click.option("--bucket", default=None, help="Artifact bucket to scope storage permissions to.")
@click.option("--role-arn", default=None, help="Execution role the provider passes to the platform.")
@click.option("--region", default=None, help="Region to scope resources to (default: any).")
@click.option("--account", default=None, help="Account id to scope resources to (default: any).")
@click.option("--kms-key-arn", default=None, help="KMS key that encrypts artifacts (sse: aws:kms).")
@click.option(
    "--state", envvar="DEPLOYER_STATE", default=None, help="Shared ledger URI whose prefix the policy also grants."
)
def iam_policy(
    provider: str,
    bucket: str | None,
    role_arn: str | None,
    region: str | None,
    account: str | None,
    kms_key_arn: str | None,
    state: str | None,
) -> None:
    """Print the least-privilege policy for the calls a provider makes."""

    def body(r: Renderer) -> None:
        from deployer.errors import CapabilityError
        from deployer.registry import provider_class

        cls = provider_class(provider)
        fn = getattr(cls, "permissions", None)
        if fn is None:
            raise CapabilityError(f"provider {provider!r} needs no cloud permissions")
        given = {"bucket": bucket, "role_arn": role_arn, "region": region, "account": account}
        if kms_key_arn:
            given["kms_key_arn"] = kms_key_arn
        if state:
            given["state"] = state
        click.echo(json.dumps(fn(**{k: v for k, v in given.items() if v is not None}), indent=2))

    run(False, body)


@cli.command()
@json_opt
def providers(as_json: bool) -> None:
    """List installed providers."""
    from deployer.registry import available

    if as_json:
        click.echo(json.dumps({"kind": "result", "providers": available()}))
        return
    for name in available():
        click.echo(name)


@cli.command()
def schema() -> None:
    """Print the spec's JSON schema."""
    from deployer.spec import Spec

    click.echo(json.dumps(Spec.model_json_schema(), indent=2, sort_keys=True))


register_ledger_commands(cli, run)


def main() -> None:
    cli(prog_name="deployer")
