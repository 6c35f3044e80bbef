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
        return {"kind": self.kind, "id": self.id}


SYSTEM_TIMER = Actor("system", "timer")
