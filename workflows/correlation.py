"""Which request a piece of work belongs to: a request id for every HTTP request (API, webhooks, dashboard),
put in the answer's `X-Request-Id` header, every problem answer, every log line written while it runs, the
history row of each transition it makes and the outbound event of that transition (`transition.request`,
with the Idempotency-Key it was sent with, as Stripe's events carry `request.id` and
`request.idempotency_key`).

Why: a platform that quotes the id of a failed call lets the bureau find its log lines; a platform that
disputes a transition ("we never asked to unbind") can be shown the request that made it; an integrator
whose answer was lost can match the event it receives to the call it sent.

A caller (a reverse proxy, a platform) may send its own `X-Request-Id`; it is kept when it is 1 to 64
ASCII letters, digits and `._:-`, holds no run of 15 or more digits nor a mobile number's 11 once those
separators are dropped (an ID number or a mobile number, however grouped: the id travels in logs and in
events to every platform a binding concerns, so a person's number must not ride in it; a date with a
serial, `20261126-000123`, or milliseconds are kept), and does not begin with `webhook:` (Gongji's
own name for a webhook's work). Otherwise, and when none is sent, Gongji makes one (`req_…`). A stored
webhook's processing runs under `webhook:<its webhook-id>` (when that id passes the same test). The
Idempotency-Key goes into events under the same test (up to 255 characters), else as null.

Kept in a context variable: `workflows` never sees Flask; each thread (and each asyncio task) has its own."""
from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, NamedTuple

from models.types import new_id


MAX_CHARS = 64  # binding_transitions.request_id holds this and the `webhook:` prefix: String(80)
KEY_CHARS = 255  # an Idempotency-Key's most (workflows/idempotency.py)
_PLAIN = re.compile(r"[A-Za-z0-9._:\-]+")
_SEPARATORS = re.compile(r"[._:\-]")
# a person's number among the digits once separators are dropped: 15 or more in a row (an ID number, of
# either generation, or one glued into a longer run), or a mobile number's 11 (1[3-9]…, maybe after 86)
_PERSONS_NUMBER = re.compile(r"[0-9]{15,}|(?<![0-9])(?:86)?1[3-9][0-9]{9}(?![0-9])")
WEBHOOK = "webhook:"


class RequestContext(NamedTuple):
    id: str
    idempotency_key: str | None = None  # as sent: checked only when an event carries it (`as_event`)


_current: ContextVar[RequestContext | None] = ContextVar("gongji_request", default=None)


def acceptable(value: str | None, *, limit: int = MAX_CHARS) -> bool:
    """Whether a caller's id may be kept as it is: short, plain ASCII, no number a person owns in it, however
    its digits are grouped. One regular expression pass or two: it runs on every request that sends one."""
    return (value is not None and 0 < len(value) <= limit and _PLAIN.fullmatch(value) is not None
            and _PERSONS_NUMBER.search(_SEPARATORS.sub("", value)) is None)


def request_id(sent: str | None) -> str:
    """The id of a request: the caller's `X-Request-Id` when `acceptable` (and not posing as a webhook's),
    else a new one."""
    return sent if acceptable(sent) and not sent.startswith(WEBHOOK) else new_id("req")


def idempotency_key(sent: str | None) -> str | None:
    """A request's Idempotency-Key as events may carry it (to every platform concerned): None when it could
    hold a person's number or name (anything but plain ASCII), or is not a valid key."""
    return sent if acceptable(sent, limit=KEY_CHARS) else None


def current_id() -> str | None:
    found = _current.get()
    return found.id if found is not None else None


def as_event() -> dict | None:
    """The `request` of an outbound transition event: {id, idempotency_key}, or None (a timer, a command)."""
    found = _current.get()
    return None if found is None else {"id": found.id, "idempotency_key": idempotency_key(found.idempotency_key)}


def begin(context: RequestContext | None):
    """Make `context` current; the token for `end`."""
    return _current.set(context)


def end(token) -> None:
    _current.reset(token)


@contextmanager
def bound(context: RequestContext | None) -> Iterator[RequestContext | None]:
    token = begin(context)
    try:
        yield context
    finally:
        end(token)


def of_webhook(webhook_id: str | None) -> RequestContext | None:
    """The context a stored webhook is processed in: `webhook:<webhook-id>`, or none for an id that could
    carry a person's number (or is too long to keep)."""
    return RequestContext(WEBHOOK + webhook_id) if acceptable(webhook_id) else None
