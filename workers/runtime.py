"""Per-process wiring for actors: the session factory they use (actors receive ids, never sessions)."""
from __future__ import annotations

from models import db as models_db
from models.settings import Settings

_state: dict = {"db": None, "settings": None}


def configure(settings: Settings, db=None) -> None:
    if db is None:
        _engine, db = models_db.from_settings(settings)
    _state["db"], _state["settings"] = db, settings


def db():
    if _state["db"] is None:
        configure(Settings.from_env())
    return _state["db"]


def settings() -> Settings:
    if _state["settings"] is None:
        configure(Settings.from_env())
    return _state["settings"]
