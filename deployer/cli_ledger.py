"""The ledger's own commands: ``unlock``, ``ledger push`` / ``ledger pull`` and ``audit``.

:func:`register` adds them to the main group (:mod:`deployer.cli` calls it with its ``run``, which maps
errors to exit codes); like the main module, this imports only click until a command runs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import click

from deployer.render import Renderer

state_opt = click.option(
    "--state",
    default=None,
    help="Ledger: a SQLite file or a URI (file://, s3://, gs://, az://); default $DEPLOYER_STATE.",
)


Body = Callable[[Renderer], int | None]
RunFn = Callable[[bool, Body], None]
_runner: list[RunFn] = []


def register(group: click.Group, run: RunFn) -> None:
    """Add ``unlock``, ``ledger`` and ``audit`` to ``group``; their bodies go through ``run``."""
    _runner[:] = [run]
    for command in (unlock, ledger, audit):
        group.add_command(command)


def _run(as_json: bool, fn: Body) -> None:
    _runner[0](as_json, fn)


@click.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove the lock whoever holds it (journaled with your name).")
@state_opt
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def unlock(name: str, force: bool, state: str | None, as_json: bool) -> None:
    """Remove endpoint NAME's lock (its holder died, or hangs), leaving an audit row in the journal."""

    def body(r: Renderer) -> int:
        from deployer import api
        from deployer.errors import LockedError

        ledger = api.open_ledger(state)
        try:
            lease = ledger.lease(name)
            if lease is not None and not force:
                raise LockedError(name, f"{lease.holder}; pass --force to remove it anyway")
            old = ledger.force_unlock(name) if lease is not None else None
        finally:
            ledger.close()
        data = {"endpoint": name, "removed": old.to_dict() if old else None}
        r.result(data, lambda: click.echo(f"{name}: unlocked (was {old.holder})" if old else f"{name}: not locked"))
        return 0

    _run(as_json, body)


@click.group()
def ledger() -> None:
    """Move an endpoint's history between ledgers (SQLite, file://, s3://, gs://, az://)."""


@ledger.command()
@click.argument("name")
@click.option("--to", "dest", required=True, help="The ledger to copy the history to (a URI or a SQLite file).")
@state_opt
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def push(name: str, dest: str, state: str | None, as_json: bool) -> None:
    """Copy endpoint NAME's whole history from this ledger (--state) to another (--to)."""
    _copy(name, state, dest, as_json)


@ledger.command()
@click.argument("name")
@click.option("--from", "source", required=True, help="The ledger to copy the history from.")
@state_opt
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pull(name: str, source: str, state: str | None, as_json: bool) -> None:
    """Copy endpoint NAME's whole history from another ledger (--from) into this one (--state)."""
    _copy(name, source, state, as_json)


def _copy(name: str, source: str | None, dest: str | None, as_json: bool) -> None:
    def body(r: Renderer) -> int:
        from deployer import api
        from deployer.ledgers.transfer import copy

        src, dst = api.open_ledger(source), api.open_ledger(dest)
        try:
            data = {**copy(src, dst, name), "from": str(src.path), "to": str(dst.path)}
        finally:
            src.close()
            dst.close()
        r.result(
            data,
            lambda: click.echo(
                f"{name}: {data['releases']} releases, {data['journal']} journal entries "
                f"copied from {data['from']} to {data['to']}"
            ),
        )
        return 0

    _run(as_json, body)


@click.command()
@click.option("--since", default=None, help="Only entries from then on: 2026-12-01, 2026-12-01T10:00:00, 24h, 30m, 7d.")
@click.option("--endpoint", "name", default=None, help="Only this endpoint.")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@state_opt
def audit(since: str | None, name: str | None, fmt: str, state: str | None) -> None:
    """Print the journal (every step, lock takeover and unlock, with actor and time) as JSON lines."""

    def body(r: Renderer) -> int:
        from deployer import api
        from deployer.ledgers.transfer import audit as entries

        start = parse_since(since)
        ledger = api.open_ledger(state)
        try:
            for entry in entries(ledger, start, name):
                click.echo(json.dumps(entry, sort_keys=True, default=str))
        finally:
            ledger.close()
        return 0

    _run(False, body)


def parse_since(since: str | None) -> float:
    """Epoch seconds for ``--since``: an ISO date or time (UTC unless it says otherwise), or an age."""
    if not since:
        return 0.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", since)
    if m:
        return time.time() - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(since)
    except ValueError:
        from deployer.errors import SpecError

        raise SpecError("--since", f"{since!r} is neither a date nor an age", fix="use 2026-12-01, 24h or 7d") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
