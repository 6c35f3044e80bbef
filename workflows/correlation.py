"""Which request a piece of work belongs to: a request id for every HTTP request (API, webhooks, dashboard),
put in the answer's `X-Request-Id` header, every problem answer, every log line written while it runs, the
history row of each transition it makes and the outbound event of that transition (`transition.request`,
with the Idempotency-Key it was sent with, as Stripe's events carry `request.id` and
`request.idempotency_key`).

Why: a platform that quotes the id of a failed call lets the bureau find its log lines; a platform that
disputes a transition ("we never asked to unbind") can be shown the request that made it; an integrator
whose answer was lost can match the event it receives to the call it sent.

A caller (a reverse proxy, a platform) may send its own `X-Request-Id`; it is kept when it is 1 to 64
characters of letters, digits and `._:-`, with no long number or mobile number in it (the id travels in
logs and in events to every platform a binding concerns: it must not carry a person's number). Otherwise,
and when none is sent, Gongji makes one (`req_…`). A stored webhook's processing runs under
`webhook:<its webhook-id>` (when that id passes the same test), the sender's own name for it.

Kept in a context variable: `workflows` never sees Flask; each thread (and each asyncio task) has its own."""
from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, NamedTuple

from models.types import new_id

from .free_text import clean
from .id_in_text import holds_long_number

MAX_CHARS = 64  # binding_transitions.request_id holds this and the `webhook:` prefix: String(80)
_SHAPE = re.compile(r"[A-Za-z0-9._:\-]{1,%d}" % MAX_CHARS)


class RequestContext(NamedTuple):
    id: str
    idempotency_key: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("gongji_request", default=None)


def acceptable(value: str | None, *, limit: int = MAX_CHARS) -> bool:
    """Whether a caller's id may be kept as it is: short, plain characters, no number a person owns."""
    return (value is not None and len(value) <= limit and _SHAPE.fullmatch(value) is not None
            and not holds_long_number(value) and clean(value) == value)


def request_id(sent: str | None) -> str:
    """The id of a request: the caller's `X-Request-Id` when `acceptable`, else a new one."""
    return sent if acceptable(sent) else new_id("req")


def idempotency_key(sent: str | None) -> str | None:
    """A request's Idempotency-Key as events may carry it (to every platform concerned): None when it could
    hold a person's number, or is not a valid key (1 to 255 characters)."""
    if not sent or len(sent) > 255 or holds_long_number(sent) or clean(sent, limit=255) != sent:
        return None
    return sent


def current() -> RequestContext | None:
    return _current.get()


def current_id() -> str | None:
    found = _current.get()
    return found.id if found is not None else None


def as_event() -> dict | None:
    """The `request` of an outbound transition event: {id, idempotency_key}, or None (a timer, a command)."""
    found = _current.get()
    return None if found is None else {"id": found.id, "idempotency_key": found.idempotency_key}


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
    return RequestContext(f"webhook:{webhook_id}") if acceptable(webhook_id) else None
