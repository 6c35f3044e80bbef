"""Who fires an event: a person (through a platform), an operator, the system (timers, person events), a
verifier (the face-verification provider's callback) or a member of a service hall's staff (through their
platform's counter system: `staff`, id `<platform>:<their staff id>`). History stores the kind and an
opaque id, never an ID number."""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("person", "operator", "system", "verifier", "staff")


@dataclass(frozen=True)
class Actor:
    kind: str
    id: str | None = None  # person id (psn_…), operator name, verifier platform id, a system component, or
    # `<platform>:<staff id>` for a service hall's staff

    def as_dict(self) -> dict:
        """As platforms see it (`public`)."""
        return public(self.kind, self.id)


def public(kind: str, actor_id: str | None) -> dict:
    """An actor as platforms see it, in events and the API's history: a bureau operator's account name is the
    bureau's own (often a member of staff's name; the dashboard and its audit log show it), so platforms see
    that an operator acted, not which one. A service hall's staff likewise: platforms see whose hall it was
    (the platform), not which member of its staff."""
    if kind == "staff":
        return {"kind": kind, "id": (actor_id or "").partition(":")[0] or None}
    return {"kind": kind, "id": None if kind == "operator" else actor_id}


SYSTEM_TIMER = Actor("system", "timer")
