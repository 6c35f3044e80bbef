"""The coalescing publisher of the web processes (workers/publisher.py): every id queued is sent exactly
once, in batches no larger than the limit, and a failing send loses nothing it was not given."""
from __future__ import annotations

import threading

from workers.publisher import Publisher


class Recorder:
    def __init__(self, fail_first: int = 0):
        self.batches: list[list[int]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, ids: list[int]) -> None:
        with self.lock:
            if self.fail_first:
                self.fail_first -= 1
                raise ConnectionError("broker down")
            self.batches.append(list(ids))


def test_ids_from_many_threads_are_each_sent_once_in_bounded_batches():
    """Given 8 threads queueing 500 ids each, when the publisher has flushed, then every id was sent
    exactly once and no batch exceeded the limit."""
    sent = Recorder()
    publisher = Publisher(sent, max_batch=25)

    def queue(k: int) -> None:
        for i in range(500):
            publisher([k * 1000 + i])
    threads = [threading.Thread(target=queue, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert publisher.flush(10)
    ids = [i for batch in sent.batches for i in batch]
    assert sorted(ids) == sorted(k * 1000 + i for k in range(8) for i in range(500))
    assert max(len(b) for b in sent.batches) <= 25


def test_a_failed_send_is_left_to_the_relay_pass_and_later_ids_still_leave():
    """Given a broker that refuses the first send, when ids are queued before and after, then the thread
    survives: the refused batch is not retried here (the relay pass re-sends its rows) and later ids are sent."""
    sent = Recorder(fail_first=1)
    publisher = Publisher(sent)

    publisher([1, 2])
    assert publisher.flush(10)
    publisher([3])
    assert publisher.flush(10)

    assert [i for batch in sent.batches for i in batch] == [3]


def test_flush_with_nothing_queued_returns_at_once():
    assert Publisher(Recorder()).flush(0.1)
