"""The transactional outbox: rows written with the state change, handed on after commit.

`workflows` cannot import the broker, so whoever composes the process (`gongji web`, `gongji serve`,
the worker) registers a listener with `on_commit`; commands call `published(ids)` after their commit.
Nothing registered, or a listener failing, loses nothing: the periodic relay pass finds the rows."""
from __future__ import annotations

import logging
from typing import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models import OutboxMessage
from models.types import new_id

from .statements import Statement

log = logging.getLogger(__name__)
OUTBOX = OutboxMessage.__table__
COLUMNS = ("topic", "binding_id", "binding_version", "created_at", "payload", "attempts")
_INSERT = Statement(sa.insert(OUTBOX).values({c: sa.bindparam(c, type_=OUTBOX.c[c].type) for c in COLUMNS})
                    .returning(OUTBOX.c.id))
_listeners: list[Callable[[list[int]], None]] = []


def on_commit(listener: Callable[[list[int]], None]) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def clear_listeners() -> None:
    _listeners.clear()


def published(ids: Iterable[int]) -> None:
    ids = [i for i in ids if i is not None]
    if not ids:
        return
    for listener in list(_listeners):
        try:
            listener(ids)
        except Exception:  # the periodic relay pass will pick the rows up
            log.exception("outbox listener failed; rows stay for the periodic relay pass")


def message(topic: str, now, data: dict, *, binding_id: str | None = None, version: int | None = None) -> dict:
    """The columns of one outbox row; its payload is the outbound event envelope of API.md."""
    payload = {"type": topic, "id": new_id("evt"), "created_at": now.isoformat(), "data": data}
    return dict(topic=topic, binding_id=binding_id, binding_version=version, created_at=now, payload=payload,
                attempts=0)


def write(conn: sa.Connection | Session, topic: str, now, data: dict, *, binding_id: str | None = None,
          version: int | None = None) -> int:
    """Insert one outbox row in the caller's transaction; its id."""
    return write_message(conn, message(topic, now, data, binding_id=binding_id, version=version))


def write_message(conn: sa.Connection | Session, columns: dict) -> int:
    return _INSERT.scalar(conn, columns)
