"""Rendering core events for people (rich) or for scripts (JSON lines on stdout).

The core never prints; the CLI passes a :class:`Renderer` as ``on_event``. On a terminal a rollout
draws a live table of traffic and gate results; elsewhere each event is one line.

Streams (docs/cli.md): a command's result for people (:attr:`Renderer.out`, :meth:`Renderer.table`)
goes to **stdout**, so ``deployer status x | grep live`` works; progress, events and errors
(:attr:`Renderer.console`) go to **stderr**. With ``--json`` stdout carries only JSON lines. Piped
(stdout not a terminal), lines are never wrapped or cut and tables are printed plain: one row a
line, columns separated by a tab, nothing truncated.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click


class Renderer:
    """Turns core events into terminal output (rich, on stderr) or JSON lines (stdout); results go to stdout."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._console: Any = None
        self._out: Any = None
        self._progress: Any = None
        self._task: Any = None
        self._status: Any = None
        self._live: Any = None
        self._traffic: dict[str, int] = {}
        self._gates: dict[str, Any] = {}
        self.resume_with: str | None = None
        """The command that resumes the rollout (``deployer deploy SPEC``), named when one is interrupted."""

    @property
    def console(self) -> Any:
        """Progress, events and diagnostics: stderr."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    @property
    def out(self) -> Any:
        """The command's result for people: stdout, never wrapped or cut when piped."""
        if self._out is None:
            from rich.console import Console

            self._out = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
        return self._out

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        """A table on stdout: drawn on a terminal; piped, plain tab-separated lines with every value whole."""
        if not self.out.is_terminal:
            for row in [headers, *rows]:
                click.echo("\t".join(row))
            return
        from rich.table import Table

        t = Table(*headers)
        for row in rows:
            t.add_row(*row)
        self.out.print(t)

    def __call__(self, event: Any) -> None:
        if self.as_json:
            click.echo(json.dumps(event.to_dict(), default=str))
            return
        kind = event.kind
        if kind == "progress":
            self._upload(event)
        elif kind == "plan":
            for line in event.diff:
                self.console.print(f"  {line}")
        elif kind == "step.started":
            self._stop_status()
            if self.console.is_terminal:
                self._status = self.console.status(event.detail)
                self._status.start()
        elif kind == "step.done":
            self._stop_status()
            mark = "[green]✓[/]" if event.outcome == "ok" else "[red]✗[/]"
            self.console.print(f"{mark} {event.detail}")
        elif kind == "traffic.changed":
            self._traffic = dict(event.weights)
            if not self._draw_table():
                self.console.print("  traffic: " + " | ".join(f"{k} {v}%" for k, v in sorted(event.weights.items())))
        elif kind == "gate.evaluated":
            self._gates[event.gate] = event
            if not self._draw_table():
                color = {"pass": "green", "fail": "red"}.get(event.outcome, "yellow")
                self.console.print(
                    f"  gate {event.gate} on {event.release}: [{color}]{event.outcome}[/] {event.reason}"
                )
        elif kind == "rolled_back":
            self.console.print(f"[yellow]↩ rolled back {event.from_release} -> {event.to_release}: {event.reason}[/]")
        elif kind == "promoted":
            self.console.print(f"[green]★ {event.release} is live[/]")
        elif kind == "cleanup.failed":
            self.console.print(f"[yellow]! cleanup {event.step} failed: {event.error}[/]")
        elif kind == "retrying":
            from rich.markup import escape

            what = f"{event.operation} of {event.release}" if event.release else event.operation
            line = f"retrying {what} (attempt {event.attempt}, {event.left_s:.0f}s left): {event.reason}"
            self.console.print(f"[yellow]  {escape(line)}[/]", soft_wrap=True)
        elif kind == "adopted":
            self.console.print(f"  adopted {', '.join(sorted(event.releases))}; live: {event.live}")
        elif kind == "interrupted":
            self._interrupted(event)

    def _interrupted(self, event: Any) -> None:
        """Say where traffic is after an interrupted rollout and the exact commands that finish or undo it."""
        self.close()
        where = ", ".join(f"{k} {v}%" for k, v in sorted(event.weights.items())) or "unknown"
        finish = self.resume_with or "deployer deploy SPEC"
        if event.returned:
            self.console.print(f"[yellow]interrupted: traffic is on {where}; {finish} resumes {event.release}[/]")
            return
        self.console.print(f"[red]interrupted with traffic split: {where}[/]")
        self.console.print(f"  finish it:  {finish}", soft_wrap=True)
        if event.baseline:
            from deployer.paths import ledger_path

            state = "" if event.ledger in ("", str(ledger_path())) else f" --state {event.ledger}"
            undo = f"deployer rollback {event.endpoint} --to {event.baseline}{state}"
            self.console.print(f"  undo it:    {undo}", soft_wrap=True)

    def _draw_table(self) -> bool:
        """On a terminal, redraw the live traffic + gates table; return False when lines are printed instead."""
        if not self.console.is_terminal:
            return False
        from rich.live import Live
        from rich.table import Table

        table = Table(title="rollout", show_header=True)
        table.add_column("release")
        table.add_column("traffic", justify="right")
        table.add_column("gate")
        table.add_column("outcome")
        table.add_column("observed / reason")
        traffic = sorted(self._traffic.items())
        gates = list(self._gates.values())
        for i in range(max(len(traffic), len(gates))):
            rel, weight = traffic[i] if i < len(traffic) else ("", None)
            g = gates[i] if i < len(gates) else None
            color = {"pass": "green", "fail": "red"}.get(g.outcome, "yellow") if g else ""
            observed = (
                ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in g.observed.items())
                if g
                else ""
            )
            table.add_row(
                rel,
                "" if weight is None else f"{weight}%",
                g.gate if g else "",
                f"[{color}]{g.outcome}[/]" if g else "",
                (observed or (g.reason if g else ""))[:60],
            )
        if self._live is None:
            self._live = Live(table, console=self.console, refresh_per_second=8, transient=False)
            self._live.start()
        else:
            self._live.update(table)
        return True

    def _upload(self, event: Any) -> None:
        if self._progress is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            self._progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(event.task, total=event.total)
        self._progress.update(self._task, completed=event.done, total=event.total)
        if event.total and event.done >= event.total:
            self._progress.stop()
            self._progress = None

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def close(self) -> None:
        self._stop_status()
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._progress is not None:
            self._progress.stop()

    def result(self, data: dict[str, Any], human: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps({"kind": "result", **data}, default=str))
        else:
            human()
