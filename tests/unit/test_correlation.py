"""Request ids (`workflows/correlation.py`): which caller ids are kept, what is made instead, the context a
piece of work runs in, and the log line that names it (`models.settings.configure_logging`)."""
from __future__ import annotations

import io
import logging
import re
import threading

import pytest

from models.settings import LOG_FORMAT, configure_logging
from workflows import correlation
from workflows.correlation import RequestContext

ID_NUMBER = "320102199003071239"  # 1990-03-07, a valid check digit (tests/unit/test_idnumbers.py)
MADE = re.compile(r"req_[0-9a-z]{26}")


@pytest.mark.parametrize("sent", ["js-trace-0001", "3f2b9c1e-7d4a-4c1b-9a55-0e2f1c3d4b6a", "a" * 64,
                                  "gw:node-3.request_17", "1", "inv-2026-11-26-0001", "20261126-000123",
                                  "1732550000000", "0bd8c5f4a1e2d3c4b5a6978812345678"])
def test_a_plain_caller_id_is_kept(sent):
    """Given an X-Request-Id of 1 to 64 letters, digits and ._:- with no person's number in it
    Then it is the request's id as sent."""
    assert correlation.request_id(sent) == sent


@pytest.mark.parametrize("sent", [ID_NUMBER, f"trace-{ID_NUMBER}", ID_NUMBER.replace("", "-")[1:-1],
                                  "320102:19900307:1239", "320102.........199003071239", "320102_199003071239",
                                  "32010219900307123X", "13812345678", "call-138-1234-5678", "138:1234:5678",
                                  "138----1234----5678", "86-138-1234-5678", "123456789012345", "a" * 65,
                                  "trace 1", "追踪-1", "", "trace\n1", "<script>", "webhook:msg_1"])
def test_an_id_that_could_carry_a_number_or_does_not_fit_is_replaced(sent):
    """Given an X-Request-Id holding an ID number (plain, glued, or its digits grouped by any of `._:-`), a
    mobile number however grouped, 15 digits, or over 64 characters, spaces, other characters, nothing, or
    posing as a webhook's work
    Then Gongji makes the id instead (a log line, an event to every platform concerned must not carry it)."""
    assert MADE.fullmatch(correlation.request_id(sent))


def test_no_caller_id_gets_a_fresh_one_each_time():
    assert MADE.fullmatch(correlation.request_id(None))
    assert correlation.request_id(None) != correlation.request_id(None)


@pytest.mark.parametrize("sent, kept", [("inv-2026-11-26-0001", "inv-2026-11-26-0001"), ("k" * 255, "k" * 255),
                                        ("k" * 256, None), (ID_NUMBER, None), (f"invite:{ID_NUMBER}", None),
                                        ("13812345678", None), ("invite-王大明", None),
                                        # full-width digits, UTF-8 read as latin-1 (as WSGI hands a header over)
                                        ("３２０１０２１９９０".encode().decode("latin-1"), None),
                                        ("", None), (None, None)])
def test_an_idempotency_key_goes_into_events_only_without_a_persons_number(sent, kept):
    assert correlation.idempotency_key(sent) == kept


def test_a_webhook_is_processed_under_its_own_id_unless_that_could_carry_a_number():
    assert correlation.of_webhook("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W") == RequestContext(
        "webhook:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    assert correlation.of_webhook(f"msg_{ID_NUMBER}") is None
    assert correlation.of_webhook("m" * 65) is None


def test_contexts_nest_and_end_and_each_thread_has_its_own():
    """Given a request context bound in this thread
    When another is bound inside it, and a thread looks meanwhile
    Then the inner one is current until it ends, the outer one after, nothing after both; the other
    thread sees none; the event form carries the id and key."""
    assert correlation.current_id() is None and correlation.as_event() is None
    seen = []
    with correlation.bound(RequestContext("outer", "key-1")):
        with correlation.bound(RequestContext("inner")):
            assert correlation.current_id() == "inner"
            assert correlation.as_event() == {"id": "inner", "idempotency_key": None}
            worker = threading.Thread(target=lambda: seen.append(correlation.current_id()))
            worker.start()
            worker.join()
        assert correlation.as_event() == {"id": "outer", "idempotency_key": "key-1"}
    assert correlation.current_id() is None
    assert seen == [None]


def test_log_lines_name_the_request_they_were_written_in(monkeypatch):
    """Given Gongji's log format and logging configured with the request context (as `gongji web`, `serve`
    and `scheduler` do)
    When a line is logged inside a request's context and one outside any
    Then the first names the request in brackets after the logger's name, the second has nothing there;
    configuring again does not wrap the record factory twice."""
    made = logging.getLogRecordFactory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, defaults={"gongji_request": ""}))
    log = logging.getLogger("gongji.test.correlation")
    log.addHandler(handler)
    log.propagate = False
    monkeypatch.setenv("GONGJI_LOG_LEVEL", "INFO")
    try:
        configure_logging(correlation.current_id)
        configure_logging(correlation.current_id)
        assert not getattr(logging.getLogRecordFactory().wrapped, "gongji_requests", False)  # wrapped once
        with correlation.bound(RequestContext("req_abc")):
            log.warning("inside")
        log.warning("outside")
    finally:
        logging.setLogRecordFactory(made)
        log.removeHandler(handler)
    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith("WARNING gongji.test.correlation [req_abc]: inside")
    assert outside.endswith("WARNING gongji.test.correlation: outside")


def test_a_hosts_handler_names_the_request_too(monkeypatch):
    """Given a root logger a host already gave a handler with its own format (dramatiq's worker processes)
    When logging is configured with the request context and a line is logged inside a webhook's processing
    Then the host's line starts its message with the webhook's id, and a line outside any has none; a record
    another handler sees is unchanged."""
    made, root = logging.getLogRecordFactory(), logging.getLogger()
    saved = root.handlers[:], root.level
    stream, seen = io.StringIO(), []
    host = logging.StreamHandler(stream)
    host.setFormatter(logging.Formatter("[%(name)s] [%(levelname)s] %(message)s"))

    class Other(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())
    root.handlers[:] = [host, Other()]
    monkeypatch.setenv("GONGJI_LOG_LEVEL", "INFO")
    try:
        configure_logging(correlation.current_id)
        with correlation.bound(correlation.of_webhook("msg_abc")):
            logging.getLogger("workflows.webhooks").warning("processing failed: %s", "boom")
        logging.getLogger("workflows.webhooks").warning("outside")
    finally:
        logging.setLogRecordFactory(made)
        root.handlers[:], root.level = saved
    assert stream.getvalue().splitlines() == ["[workflows.webhooks] [WARNING] [webhook:msg_abc] processing failed: boom",
                                              "[workflows.webhooks] [WARNING] outside"]
    assert seen == ["processing failed: boom", "outside"]
