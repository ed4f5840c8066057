"""Optional notifications: tell a chat channel when a release is promoted or rolled back.

:func:`notify` posts a Slack-compatible incoming-webhook body (``{"text": ..., "blocks": [...]}``;
Mattermost, Rocket.Chat and Teams' Slack-compatible connectors read the same ``text``) for
:class:`~deployer.events.RolledBack` and :class:`~deployer.events.Promoted` events.

A notification never breaks a deploy: :func:`notify` does not raise and does not print; it
returns a :class:`NotifyResult` that is falsy when nothing was delivered and says why. The HTTP
call has a bounded timeout (at most :data:`MAX_TIMEOUT_S`).

:func:`post_json` is the one small HTTP helper shared with webhook gates (httpx, imported lazily so
``import deployer`` stays light).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from deployer.events import Event, Promoted, RolledBack
from deployer.secrets import redact_url, reveal, scrub

Poster = Callable[[str, dict[str, Any], float], int]
"""``post(url, json_body, timeout_s) -> HTTP status``; raises ``OSError`` when the URL is unreachable."""

MAX_TIMEOUT_S = 30.0


def post_json(url: str, body: dict[str, Any], timeout_s: float) -> int:
    """POST ``body`` as JSON and return the status code. Redirects are not followed.

    Connection failures and timeouts are raised as ``ConnectionError`` / ``TimeoutError`` (both
    ``OSError``) from the httpx exception, so callers need not import httpx.
    """
    import httpx

    _hide_in_logs(url)
    try:
        return httpx.post(url, json=body, timeout=timeout_s).status_code
    except httpx.TimeoutException as e:
        raise TimeoutError(f"no answer within {timeout_s:g}s") from e
    except httpx.TransportError as e:
        raise ConnectionError(str(e) or type(e).__name__) from e


_SECRET_URLS: set[str] = set()


class _RedactUrls(logging.Filter):
    """httpx logs every request's full URL at INFO; a webhook URL is a secret: show it redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(str(a) in _SECRET_URLS for a in record.args):
            record.args = tuple(redact_url(str(a)) if str(a) in _SECRET_URLS else a for a in record.args)
        return True


def _hide_in_logs(url: str) -> None:
    if not _SECRET_URLS:
        logging.getLogger("httpx").addFilter(_RedactUrls())
    _SECRET_URLS.add(url)


@dataclass(frozen=True)
class NotifyResult:
    """The outcome of one notification. Truthy only when the receiver answered 2xx."""

    ok: bool
    status: int | None = None
    error: str | None = None

    def __bool__(self) -> bool:
        return self.ok


def message(event: Event) -> dict[str, Any] | None:
    """The Slack-compatible body for ``event``, or None for events that are not notified."""
    if isinstance(event, RolledBack):
        text = (
            f"Rolled back endpoint `{event.endpoint}` from {event.from_release or '-'} "
            f"to {event.to_release or '-'}: {event.reason or 'no reason given'}"
        )
        fields = {
            "Endpoint": event.endpoint,
            "From release": event.from_release or "-",
            "To release": event.to_release or "-",
            "Reason": event.reason or "-",
        }
        title, icon = "Rollback", ":rotating_light:"
    elif isinstance(event, Promoted):
        text = f"Promoted release {event.release} on endpoint `{event.endpoint}`"
        fields = {"Endpoint": event.endpoint, "Release": event.release}
        title, icon = "Promoted", ":white_check_mark:"
    else:
        return None
    return {
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"{title}: {event.endpoint}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {text}"}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields.items()],
            },
        ],
    }


def notify(
    url: SecretStr | str, event: Event, *, timeout_s: float = 5.0, post: Poster | None = None
) -> NotifyResult:
    """Post ``event`` to the webhook ``url``; never raises.

    Returns a falsy :class:`NotifyResult` with ``error`` set when the event is not one that is
    notified, the URL is not http(s), the receiver is unreachable or answers non-2xx. The URL is a
    secret: ``error`` names it only by :func:`~deployer.secrets.redact_url`.
    """
    clear = reveal(url) or ""
    body = message(event)
    if body is None:
        return NotifyResult(False, error=f"event {event.kind!r} is not notified")
    if not clear.startswith(("http://", "https://")):
        return NotifyResult(
            False, error=f"notification url must start with http:// or https://, got {redact_url(clear)!r}"
        )
    send = post or post_json
    try:
        status = send(clear, body, min(max(timeout_s, 0.1), MAX_TIMEOUT_S))
    except Exception as e:  # a notification must never break a deploy
        return NotifyResult(False, error=scrub(f"{type(e).__name__}: {e}", clear))
    if 200 <= status < 300:
        return NotifyResult(True, status=status)
    return NotifyResult(False, status=status, error=f"receiver answered {status}")
