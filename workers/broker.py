"""The dramatiq broker: Redis from `GONGJI_REDIS_URL`, or an in-process StubBroker in the embedded default."""
from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from models.settings import Settings

QUEUE = "gongji"


def setup(settings: Settings) -> dramatiq.Broker:
    if settings.redis_url:
        broker = RedisBroker(url=settings.redis_url, namespace="gongji")
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    return broker


def add_liveness() -> None:
    """In a `gongji worker` process: keep the health file fresh while its threads live (workers/liveness.py)."""
    from .liveness import Liveness
    dramatiq.get_broker().add_middleware(Liveness())
