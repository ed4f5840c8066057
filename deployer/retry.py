"""The retry policy for provider calls: transient errors only, backoff with jitter, inside a deadline.

Only :class:`~deployer.errors.TransientError` is retried (providers classify throttling, 5xx and
timeouts as transient by error code). Everything else fails fast.

One deadline for all retries: while :func:`call` runs, :func:`remaining_s` tells an SDK's own retry
loop (botocore's, for example) how much of the caller's deadline is left, so the SDK stops retrying
when it is spent instead of multiplying the attempts.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from deployer.errors import TransientError

T = TypeVar("T")

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("deployer_retry_deadline", default=None)


def remaining_s() -> float | None:
    """Seconds left of the innermost :func:`call`'s deadline (None outside a call)."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def call(
    fn: Callable[[], T],
    *,
    attempts: int = 8,
    deadline_s: float = 120.0,
    initial_s: float = 0.2,
    max_wait_s: float = 10.0,
    sleep: Callable[[float], None] | None = None,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
) -> T:
    """Call ``fn``; on TransientError retry with exponential backoff and jitter.

    Gives up after ``attempts`` tries or ``deadline_s`` seconds, re-raising the last TransientError.
    ``sleep`` is injectable for tests. ``on_retry(error, attempt, seconds_left)`` is told of each
    transient error that will be retried, before the backoff sleep (how the engine reports progress).
    """
    try:
        wait = wait_exponential_jitter(**{"multiplier": initial_s}, max=max_wait_s, jitter=initial_s)
    except TypeError:  # tenacity < 9.2 (google-genai, under google-cloud-aiplatform, pins it) names it initial
        wait = wait_exponential_jitter(initial=initial_s, max=max_wait_s, jitter=initial_s)
    outer = _DEADLINE.get()
    mine = time.monotonic() + deadline_s

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None and error is not None:
            on_retry(error, state.attempt_number, max(0.0, mine - time.monotonic()))

    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(attempts) | stop_after_delay(deadline_s),
        wait=wait,
        reraise=True,
        before_sleep=before_sleep,
    )
    if sleep is not None:
        retrying.sleep = sleep
    token = _DEADLINE.set(mine if outer is None else min(outer, mine))
    try:
        return retrying(fn)
    finally:
        _DEADLINE.reset(token)
