"""Queue depth as the dashboard shows it, read from a real Redis broker and from the embedded StubBroker:
ready, delayed and dead-lettered messages of Gongji's queue (dramatiq's own keys, no worker running)."""
from __future__ import annotations

import os
import uuid

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from workers import queues
from workers.broker import QUEUE

pytestmark = pytest.mark.redis


def _messages(broker, n: int, *, delay_ms: int | None = None) -> None:
    for _ in range(n):
        msg = dramatiq.Message(queue_name=QUEUE, actor_name="noop", args=(), kwargs={}, options={})
        broker.enqueue(msg, delay=delay_ms)


@pytest.fixture
def redis_broker():
    url = os.environ.get("GONGJI_TEST_REDIS_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("GONGJI_TEST_REDIS_URL is not set (make test starts Redis)")
        pytest.skip("GONGJI_TEST_REDIS_URL is not set")
    broker = RedisBroker(url=url, namespace=f"gongji-depth-{uuid.uuid4().hex[:8]}")
    broker.declare_queue(QUEUE)
    yield broker
    broker.client.delete(*broker.client.keys(f"{broker.namespace}:*") or ["none"])
    broker.close()


def test_redis_depth_counts_ready_delayed_and_dead(redis_broker):
    """Given 3 ready and 2 delayed messages and one dead letter in Redis, When the depth is read, Then it
    is 3 ready, 2 delayed, 1 dead, nothing in flight."""
    _messages(redis_broker, 3)
    _messages(redis_broker, 2, delay_ms=600_000)
    key = f"{redis_broker.namespace}:{QUEUE}.XQ"
    redis_broker.client.hset(f"{key}.msgs", "dead-1", b"{}")  # what dramatiq's nack writes
    redis_broker.client.zadd(key, {"dead-1": 0})
    assert queues.depth(redis_broker) == {"ready": 3, "in_flight": 0, "delayed": 2, "dead": 1}


def test_embedded_depth_counts_the_stub_queues():
    """Given the embedded StubBroker with 2 ready and 1 delayed message, When the depth is read, Then 2, 1, 0."""
    broker = StubBroker()
    broker.declare_queue(QUEUE)
    _messages(broker, 2)
    _messages(broker, 1, delay_ms=600_000)
    assert queues.depth(broker) == {"ready": 2, "in_flight": None, "delayed": 1, "dead": 0}


def test_an_unreachable_broker_is_unknown_not_an_error():
    """Given a Redis broker nobody listens to, When the depth is read, Then every figure is unknown (None)."""
    broker = RedisBroker(url="redis://127.0.0.1:9/0", namespace="nowhere")
    assert queues.depth(broker) == {"ready": None, "in_flight": None, "delayed": None, "dead": None}
