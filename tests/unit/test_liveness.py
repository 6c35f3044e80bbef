"""`workers/liveness.py`: a worker process is whole while every consumer and worker thread lives."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from workers.liveness import whole


def _thread(alive: bool) -> threading.Thread:
    t = threading.Thread(target=(threading.Event().wait if alive else (lambda: None)), args=(5,) if alive else (),
                         daemon=True)
    t.start()
    if not alive:
        t.join()
    return t


def test_a_worker_is_whole_only_while_every_thread_lives():
    """Given a worker's consumer and worker threads, Then it is whole with all alive, not with one dead, and
    not before it has any (not started consuming)."""
    assert whole(SimpleNamespace(consumers={"q": _thread(True)}, workers=[_thread(True), _thread(True)]))
    assert not whole(SimpleNamespace(consumers={"q": _thread(True)}, workers=[_thread(True), _thread(False)]))
    assert not whole(SimpleNamespace(consumers={"q": _thread(False)}, workers=[_thread(True)]))
    assert not whole(SimpleNamespace(consumers={}, workers=[]))
