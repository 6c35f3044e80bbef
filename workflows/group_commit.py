"""Group commit: concurrent callers in one process share one statement and one commit.

Why: storing an inbound webhook is one small INSERT, and nearly all it costs is per statement, not per
row: a pooled connection, a round trip, the executor's start-up, a commit and its WAL flush. A caller
hands its row to `GroupCommit.submit`. If no batch is being written, the caller writes every row queued
so far, its own among them, as one batch (`write(rows) -> results`, one per row, in order). Otherwise it
waits for the batch in flight; when that one is done, a caller whose row is still queued writes the next
batch. There is no thread of its own and no timer: a caller alone writes a batch of one at once, so an
idle process answers as fast as without it, and batches only form while a write is already under way.

Durability is unchanged: `submit` returns only after the batch holding the row committed. If a batch of
several fails with an error a row can cause (`row_errors`, e.g. a constraint), each of its rows is
written alone (`write([row])`), so one bad row fails only its caller; any other error (the database
away, a pool timeout) is every caller's answer at once, without a retry per row."""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

MAX_BATCH = 256  # rows per statement


class _Pending:
    __slots__ = ("row", "done", "result", "error")

    def __init__(self, row):
        self.row, self.done, self.result, self.error = row, False, None, None


class GroupCommit:
    def __init__(self, write: Callable[[Sequence[Any]], Sequence[Any]], *, max_batch: int = MAX_BATCH,
                 row_errors: tuple[type[BaseException], ...] = ()):
        self._write, self._max, self._row_errors = write, max_batch, row_errors
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False
        self.batches = 0  # batches written (for tests and the curious)

    def submit(self, row) -> Any:
        """Write `row` in the next batch; its result (or the exception its write raised)."""
        mine = _Pending(row)
        with self._cond:
            self._queue.append(mine)
        while True:
            with self._cond:
                while self._writing and not mine.done:
                    self._cond.wait()
                if mine.done:
                    break
                self._writing = True  # nothing is being written and this row is still queued: write the queue
                batch, self._queue = self._queue[:self._max], self._queue[self._max:]
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()  # the callers of this batch, and whoever writes the next one
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _run(self, batch: list[_Pending]) -> None:
        self.batches += 1
        try:
            results = self._write([p.row for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a group commit wrote {len(batch)} rows and answered {len(results)}")
            for p, result in zip(batch, results):
                p.result = result
        except self._row_errors as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:  # one row may be the cause: each alone, so only its own caller fails
                for p in batch:
                    self._run([p])
        except Exception as exc:  # noqa: BLE001 - every caller's answer
            for p in batch:
                p.error = exc
        except BaseException as exc:  # an interrupt: raised in this thread, the others told so
            for p in batch:
                p.error = RuntimeError("the group's writer was interrupted")
                p.error.__cause__ = exc
            raise
        finally:
            for p in batch:
                p.done = True
