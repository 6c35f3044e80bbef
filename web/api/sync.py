"""Regional sync for platforms: the pull feed to rebuild a copy (`GET /sync/bindings?after=<cursor>`) and
the calling platform's own lag (`GET /sync/status`)."""
from __future__ import annotations

from flask import current_app, g, request

from workflows import sync
from workflows.errors import DomainError

from . import db, endpoint
from .schemas import SyncPage, SyncStatus

FEED_QUERY = (("after", {"type": "string"}, "the `next` cursor of the previous page; absent: from the start"),
              ("limit", {"type": "integer", "minimum": 1, "maximum": sync.MAX_PAGE, "default": 500},
               "bindings per page"))


@endpoint("GET", "/sync/bindings", "The bindings this platform is concerned with, in change order, current "
          f"state (masked); changes appear a while after they are made ({sync.HORIZON_S:g} s unless "
          "GONGJI_SYNC_HORIZON_S says otherwise), so a late commit is never passed over", answer=SyncPage, tag="sync",
          errors=(401, 422), query=FEED_QUERY)
def sync_feed():
    try:
        limit = int(request.args.get("limit", 500))
    except ValueError:
        raise DomainError("validation_failed", "limit is an integer") from None
    if not 1 <= limit <= sync.MAX_PAGE:  # what the document says, not a silent clamp
        raise DomainError("validation_failed", f"limit is 1 to {sync.MAX_PAGE}")
    return sync.feed(db(), g.platform, after=request.args.get("after") or None, limit=limit,
                     horizon_s=current_app.extensions["gongji"]["settings"].sync_horizon_s)


@endpoint("GET", "/sync/status", "What this platform has not acknowledged yet: count, oldest age (s), failing "
          "and dead deliveries", answer=SyncStatus, tag="sync", errors=(401,))
def sync_status():
    nothing = {"behind": 0, "dead": 0, "failing": 0, "oldest_age_s": 0.0}
    mine = sync.lag(db(), platform_id=g.platform.id).get(g.platform.id, nothing)
    return {"platform": g.platform.id, **mine}
