"""Group commit (workflows/group_commit.py) without a database: a writer function stands in for the
statement. Threads meet at explicit events; the waits only bound a hang, they decide nothing."""
from __future__ import annotations

import threading
import time

import pytest

from workflows.group_commit import GroupCommit


def wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.001)


class Writer:
    """Records each batch; the first batch can be held until released; rows named 'bad' make it raise."""

    def __init__(self, hold_first: bool = False):
        self.batches: list[list] = []
        self.entered, self.release = threading.Event(), threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, rows):
        self.batches.append(list(rows))
        self.entered.set()
        assert self.release.wait(10)
        if "bad" in rows:
            raise ValueError("bad row")
        return [f"stored {r}" for r in rows]


def submit_all(group, rows) -> tuple[list[threading.Thread], dict]:
    results: dict = {}

    def run(row):
        try:
            results[row] = group.submit(row)
        except Exception as exc:  # noqa: BLE001 - the test reads it
            results[row] = exc
    threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in rows]
    for t in threads:
        t.start()
    return threads, results


def test_a_caller_alone_writes_its_row_at_once_as_a_batch_of_one():
    """Given nothing being written, When one row is submitted, Then it is written alone and its result returned."""
    writer = Writer()
    group = GroupCommit(writer)
    assert group.submit("a") == "stored a"
    assert writer.batches == [["a"]]


def test_rows_arriving_while_a_batch_is_written_are_written_together_next():
    """Given a batch of one being written (held inside the writer)
    When five more rows are submitted meanwhile
    Then they wait, and are then written as one batch; every caller gets its own row's result."""
    writer = Writer(hold_first=True)
    group = GroupCommit(writer)
    first, results = submit_all(group, ["a"])
    assert writer.entered.wait(10)
    others, more = submit_all(group, ["b", "c", "d", "e", "f"])
    wait_for(lambda: len(group._queue) == 5)
    writer.release.set()
    for t in first + others:
        t.join(10)
    assert writer.batches == [["a"], ["b", "c", "d", "e", "f"]]
    assert {**results, **more} == {r: f"stored {r}" for r in "abcdef"}


def test_a_failing_batch_is_written_row_by_row_so_only_the_bad_row_fails():
    """Given a batch being written When a group holding a bad row follows, Then each of its rows is
    written alone: the bad row's caller gets the error, the others their results."""
    writer = Writer(hold_first=True)
    group = GroupCommit(writer)
    first, _ = submit_all(group, ["a"])
    assert writer.entered.wait(10)
    others, results = submit_all(group, ["b", "bad", "c"])
    wait_for(lambda: len(group._queue) == 3)
    writer.release.set()
    for t in first + others:
        t.join(10)
    assert writer.batches[1:] == [["b", "bad", "c"], ["b"], ["bad"], ["c"]]
    assert results["b"] == "stored b" and results["c"] == "stored c"
    assert isinstance(results["bad"], ValueError)


def test_a_batch_holds_at_most_max_batch_rows_and_every_row_is_written():
    """Given max_batch 2 and five rows queued behind a held batch, Then they leave in batches of at most
    two, and every caller gets its result."""
    writer = Writer(hold_first=True)
    group = GroupCommit(writer, max_batch=2)
    first, _ = submit_all(group, ["a"])
    assert writer.entered.wait(10)
    others, results = submit_all(group, list("bcdef"))
    wait_for(lambda: len(group._queue) == 5)
    writer.release.set()
    for t in first + others:
        t.join(10)
    assert [len(b) for b in writer.batches[1:]] == [2, 2, 1]
    assert sorted(r for b in writer.batches[1:] for r in b) == list("bcdef")
    assert results == {r: f"stored {r}" for r in "bcdef"}


def test_an_error_of_a_batch_of_one_reaches_its_caller():
    group = GroupCommit(Writer())
    with pytest.raises(ValueError):
        group.submit("bad")
    assert group.submit("a") == "stored a"  # and the next caller is not stuck
