"""The one wait loop. Providers poll once and never sleep; this loop owns time.

It has an overall deadline, exponential backoff with full jitter between polls, and an injected
:class:`Clock`, so tests drive time without patching ``time.sleep``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from deployer.errors import DeployerError, ProviderError, TransientError, WaitTimeoutError
from deployer.records import Operation, OperationStatus


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Monotonic time for deadlines; :meth:`wall` for what is aligned to the calendar (metric periods)."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass
class FakeClock:
    """A clock for tests: ``sleep`` advances ``now`` instantly and records each sleep."""

    t: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)


def wall_offset(clock: Clock) -> float:
    """Seconds to add to ``clock.now()`` to get epoch time, where metric periods have their boundaries.

    A clock with a ``wall()`` method (:class:`SystemClock`) is measured against it; any other clock
    (:class:`FakeClock`) counts epoch seconds itself, so the offset is 0.
    """
    wall = getattr(clock, "wall", None)
    return float(wall()) - clock.now() if callable(wall) else 0.0


@dataclass(frozen=True)
class Backoff:
    """Delay before poll ``n`` (0-based): ``uniform(0, min(cap, first * factor**n))``, at least ``floor``."""

    first: float = 0.05
    factor: float = 1.6
    cap: float = 5.0
    floor: float = 0.02

    def delay(self, n: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.first * self.factor**n)
        return max(self.floor, rng.uniform(ceiling / 2, ceiling))


def wait_for(
    op: Operation,
    poll: Callable[[Operation], OperationStatus],
    *,
    timeout_s: float,
    clock: Clock | None = None,
    backoff: Backoff | None = None,
    on_poll: Callable[[OperationStatus], None] | None = None,
    rng: random.Random | None = None,
    on_retry: Callable[[TransientError, float], None] | None = None,
) -> OperationStatus:
    """Poll ``op`` until it is terminal or ``timeout_s`` passes.

    Returns the terminal status (``succeeded`` or ``failed``: the caller decides what failure means).
    A :class:`TransientError` from ``poll`` counts as "still running" until the deadline; each one is
    reported to ``on_retry(error, seconds_left)`` so a user sees why nothing moves.
    Raises :class:`WaitTimeoutError` carrying ``op`` at the deadline.
    """
    if op.done:
        return OperationStatus(state="succeeded")
    clock = clock or SystemClock()
    backoff = backoff or Backoff()
    rng = rng or random.Random()
    deadline = clock.now() + timeout_s
    n = 0
    last: OperationStatus | None = None
    while True:
        try:
            last = poll(op)
        except TransientError as e:
            last = None
            if on_retry:
                on_retry(e, max(0.0, deadline - clock.now()))
        except ProviderError:
            raise
        except DeployerError:
            raise
        if last is not None:
            if on_poll:
                on_poll(last)
            if last.terminal:
                return last
        remaining = deadline - clock.now()
        if remaining <= 0:
            msg = last.message if last and last.message else "no terminal state"
            raise WaitTimeoutError(
                f"{op.kind} of {op.endpoint}{'/' + op.release if op.release else ''} "
                f"did not finish within {timeout_s:g}s ({msg})",
                operation=op,
            )
        clock.sleep(min(remaining, backoff.delay(n, rng)))
        n += 1


def sleep_until(clock: Clock, seconds: float, *, tick: float = 1.0, every: Callable[[], bool] | None = None) -> bool:
    """Sleep ``seconds`` in ticks, calling ``every()`` after each; stop early (return False) when it says so."""
    end = clock.now() + seconds
    while True:
        remaining = end - clock.now()
        if remaining <= 0:
            return True
        clock.sleep(min(tick, remaining))
        if every is not None and not every():
            return False
