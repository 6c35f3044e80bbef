"""Regional sync for platforms: the pull feed to rebuild a copy (`GET /sync/bindings?after=<cursor>`) and
the calling platform's own lag (`GET /sync/status`)."""
from __future__ import annotations

from flask import g, request

from workflows import sync
from workflows.errors import DomainError

from . import db, endpoint
from .schemas import SyncPage, SyncStatus

FEED_QUERY = (("after", {"type": "string"}, "the `next` cursor of the previous page; absent: from the start"),
              ("limit", {"type": "integer", "minimum": 1, "maximum": sync.MAX_PAGE, "default": 500},
               "bindings per page"))


@endpoint("GET", "/sync/bindings", "The bindings this platform is concerned with, current state (masked), in "
          "the order their last changes committed: a change appears once it and every write begun before it "
          "have committed (milliseconds), and a cursor never passes over a change that commits later. The "
          "same binding appears again after each later change of it", answer=SyncPage, tag="sync",
          codes=("validation_failed",), query=FEED_QUERY)
def sync_feed():
    given = request.args.get("limit", "500")
    if not (given.isascii() and given.isdigit() and len(given) <= 6):  # not int()'s " 5", "1_0" or "５"
        raise DomainError("validation_failed", f"limit is an integer from 1 to {sync.MAX_PAGE}")
    limit = int(given)
    if not 1 <= limit <= sync.MAX_PAGE:  # what the document says, not a silent clamp
        raise DomainError("validation_failed", f"limit is 1 to {sync.MAX_PAGE}")
    return sync.feed(db(), g.platform, after=request.args.get("after") or None, limit=limit)


@endpoint("GET", "/sync/status", "What this platform has not acknowledged yet: count, oldest age (s), failing "
          "and dead deliveries", answer=SyncStatus, tag="sync")
def sync_status():
    mine = sync.lag(db(), platform_id=g.platform.id).get(g.platform.id, sync.NOTHING_BEHIND)
    return {"platform": g.platform.id, **mine}
