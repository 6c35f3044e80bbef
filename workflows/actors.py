"""Who fires an event: a person (through a platform), an operator, the system (timers, person events) or
a verifier (the face-verification provider's callback). History stores the kind and an opaque id, never
an ID number."""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("person", "operator", "system", "verifier")


@dataclass(frozen=True)
class Actor:
    kind: str
    id: str | None = None  # person id (psn_…), operator name, verifier platform id, or a system component

    def as_dict(self) -> dict:
        """As platforms see it (`public`)."""
        return public(self.kind, self.id)


def public(kind: str, actor_id: str | None) -> dict:
    """An actor as platforms see it, in events and the API's history: a bureau operator's account name is the
    bureau's own (often a member of staff's name; the dashboard and its audit log show it), so platforms see
    that an operator acted, not which one."""
    return {"kind": kind, "id": None if kind == "operator" else actor_id}


SYSTEM_TIMER = Actor("system", "timer")
