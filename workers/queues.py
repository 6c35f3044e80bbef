"""Queue depth for the dashboard: ready, in flight, delayed and dead-lettered messages of our queue.

dramatiq-dashboard does not work with dramatiq 2 (see LIBRARIES.md), so this reads the broker directly:
on Redis the keys dramatiq's dispatch script keeps (`<ns>:<queue>` ready ids, `.msgs` every message
not yet acknowledged, `.DQ.msgs` delayed, `.XQ.msgs` dead letters, kept 7 days); in the embedded default
the StubBroker's in-memory queues. Counts are messages; None means the broker could not be asked."""
from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from .broker import QUEUE


def depth(broker: dramatiq.Broker | None = None) -> dict[str, int | None]:
    broker = broker or dramatiq.get_broker()
    try:
        if isinstance(broker, RedisBroker):
            key = f"{broker.namespace}:{QUEUE}"
            with broker.client.pipeline() as p:
                p.llen(key).hlen(f"{key}.msgs").hlen(f"{key}.DQ.msgs").hlen(f"{key}.XQ.msgs")
                ready, unacked, delayed, dead = p.execute()
            return {"ready": ready, "in_flight": max(unacked - ready, 0), "delayed": delayed, "dead": dead}
        if isinstance(broker, StubBroker):
            q = broker.queues.get(QUEUE)
            dq = broker.queues.get(f"{QUEUE}.DQ")
            return {"ready": q.qsize() if q else 0, "in_flight": None, "delayed": dq.qsize() if dq else 0,
                    "dead": len(broker.dead_letters_by_queue.get(QUEUE, []))}
    except Exception:  # the dashboard shows "unknown" rather than failing the page
        return {"ready": None, "in_flight": None, "delayed": None, "dead": None}
    return {"ready": None, "in_flight": None, "delayed": None, "dead": None}
