"""Group commit (workflows/group_commit.py) without a database: a writer function stands in for the
statement. Threads meet at explicit events; the waits only bound a hang, they decide nothing."""
from __future__ import annotations

import threading
import time

import pytest

from workflows.group_commit import GroupCommit


def wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.001)


class RowError(Exception):
    """What a row can cause (a constraint): the group writes its rows one by one."""


class Writer:
    """Records each batch; the first batch can be held until released; a row named 'bad' raises RowError,
    'down' a plain error (the database away), 'short' makes it answer one result too few."""

    def __init__(self, hold_first: bool = False):
        self.batches: list[list] = []
        self.entered, self.release = threading.Event(), threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, rows):
        self.batches.append(list(rows))
        self.entered.set()
        if not self.release.wait(60):  # a bound on a hang: every caller of the batch gets this error
            raise TimeoutError("the held batch was never released within 60 s")
        if "bad" in rows:
            raise RowError("bad row")
        if "down" in rows:
            raise ConnectionError("database away")
        return [f"stored {r}" for r in rows][:-1 if "short" in rows else None]


def group_of(writer, **kw) -> GroupCommit:
    return GroupCommit(writer, row_errors=(RowError,), **kw)


def submit_all(group, rows, *, queued: bool = True) -> tuple[list[threading.Thread], dict]:
    """Submit each row from its own thread, in order: with `queued`, each thread is started once the one
    before has queued its row (a batch is being written), so the queue holds them in this order."""
    results: dict = {}

    def run(row):
        try:
            results[row] = group.submit(row)
        except BaseException as exc:  # noqa: BLE001 - the test reads it (also an interrupt)
            results[row] = exc
    threads = []
    for i, row in enumerate(rows):
        threads.append(threading.Thread(target=run, args=(row,), daemon=True))
        threads[-1].start()
        if queued:
            wait_for(lambda: len(group._queue) == i + 1)
    return threads, results


def behind_a_held_batch(**kw) -> tuple[Writer, GroupCommit, list[threading.Thread]]:
    """A group whose first batch ("a") is being written and held there until `writer.release` is set."""
    writer = Writer(hold_first=True)
    group = group_of(writer, **kw)
    first, _ = submit_all(group, ["a"], queued=False)
    assert writer.entered.wait(10)
    return writer, group, first


def finish(writer, threads) -> None:
    writer.release.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)


def test_a_caller_alone_writes_its_row_at_once_as_a_batch_of_one():
    """Given nothing being written, When one row is submitted, Then it is written alone and its result returned."""
    writer = Writer()
    group = group_of(writer)
    assert group.submit("a") == "stored a"
    assert writer.batches == [["a"]]


def test_rows_arriving_while_a_batch_is_written_are_written_together_next():
    """Given a batch of one being written (held inside the writer)
    When five more rows are submitted meanwhile
    Then they wait, and are then written as one batch; every caller gets its own row's result."""
    writer, group, first = behind_a_held_batch()
    others, results = submit_all(group, ["b", "c", "d", "e", "f"])
    finish(writer, first + others)
    assert writer.batches == [["a"], ["b", "c", "d", "e", "f"]]
    assert results == {r: f"stored {r}" for r in "bcdef"}


def test_a_batch_failing_on_a_row_is_written_row_by_row_so_only_the_bad_row_fails():
    """Given a batch being written When a group holding a row that breaks a constraint follows, Then each
    of its rows is written alone: the bad row's caller gets the error, the others their results."""
    writer, group, first = behind_a_held_batch()
    others, results = submit_all(group, ["b", "bad", "c"])
    finish(writer, first + others)
    assert writer.batches[1:] == [["b", "bad", "c"], ["b"], ["bad"], ["c"]]
    assert results["b"] == "stored b" and results["c"] == "stored c"
    assert isinstance(results["bad"], RowError)


def test_a_batch_failing_for_any_other_reason_fails_all_its_callers_at_once():
    """Given a batch being written When the next group fails for a reason no row causes (the database
    away), or answers fewer results than rows, Then every caller of that group gets the error, without a
    retry per row, and the group after it is written normally."""
    writer, group, first = behind_a_held_batch()
    others, results = submit_all(group, ["b", "down", "c"])
    finish(writer, first + others)
    assert writer.batches[1:] == [["b", "down", "c"]]
    assert all(isinstance(results[r], ConnectionError) for r in ("b", "down", "c"))

    writer, group, first = behind_a_held_batch()
    others, results = submit_all(group, ["d", "short"])
    finish(writer, first + others)
    assert writer.batches[1:] == [["d", "short"]]
    assert all(isinstance(results[r], RuntimeError) for r in ("d", "short"))
    assert group.submit("e") == "stored e"


def test_an_interrupt_of_the_writer_reaches_its_thread_and_the_others_are_told():
    """Given a batch being written and two rows queued behind it
    When the writer of their group is interrupted (KeyboardInterrupt)
    Then whichever of the two callers wrote the group gets the interrupt in its own thread, and the other
    an error caused by it."""
    writer, group, first = behind_a_held_batch()
    original = group._write

    def write(rows):
        if rows == ["b", "c"]:
            raise KeyboardInterrupt
        return original(rows)
    group._write = write
    threads, outcomes = submit_all(group, ["b", "c"])
    finish(writer, first + threads)
    kinds = sorted(type(outcomes[r]).__name__ for r in "bc")
    assert kinds == ["KeyboardInterrupt", "RuntimeError"], outcomes
    told = next(o for o in outcomes.values() if isinstance(o, RuntimeError))
    assert isinstance(told.__cause__, KeyboardInterrupt)


def test_a_batch_holds_at_most_max_batch_rows_and_every_row_is_written():
    """Given max_batch 2 and five rows queued behind a held batch, Then they leave in batches of at most
    two, in the order they came (also the rows of callers that wrote a batch without their own row in
    it), and every caller gets its result."""
    writer, group, first = behind_a_held_batch(max_batch=2)
    others, results = submit_all(group, list("bcdef"))
    finish(writer, first + others)
    assert writer.batches[1:] == [["b", "c"], ["d", "e"], ["f"]]
    assert results == {r: f"stored {r}" for r in "bcdef"}


def test_an_error_of_a_batch_of_one_reaches_its_caller():
    group = group_of(Writer())
    with pytest.raises(RowError):
        group.submit("bad")
    assert group.submit("a") == "stored a"  # and the next caller is not stuck
