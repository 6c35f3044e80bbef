"""The dashboard's read side without a database: stuck reasons' vocabulary and details, the overview's hour
buckets, and the list cursor (the sync feed's) surviving a round trip exactly."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from workflows import overview, stuck, sync
from workflows.errors import DomainError


def test_reasons_are_the_seven_stable_codes_in_display_order():
    """Given the module's reasons, when listed, then they are the seven codes, timers first, worker errors last."""
    assert stuck.REASONS == ("timer_overdue", "past_service_level", "verification_request_failed", "delivery_dead",
                             "delivery_failing", "sync_behind", "worker_error")
    assert set(stuck.SERVICE_LEVEL_S) == {"invited", "face_verified"}


def test_an_unknown_reason_is_refused_and_sync_behind_needs_its_platforms():
    """Given a reason code, when it is not one of REASONS, then it is refused as a validation error;
    sync_behind without the push platforms is a programming error, and with none it matches nothing."""
    now = datetime(2026, 3, 2, tzinfo=timezone.utc)
    with pytest.raises(DomainError) as refused:
        stuck.reason_filter("bored", now)
    assert refused.value.code == "validation_failed"
    with pytest.raises(ValueError):
        stuck.reason_filter("sync_behind", now)
    assert str(stuck.reason_filter("sync_behind", now, [])) == "false"


def test_a_detail_masks_anything_shaped_like_an_id_number_and_stays_short():
    """Given an error text naming an ID number (lower-case x too), when it becomes a detail,
    then the number is masked like the persons' masked column and the text is cut to DETAIL_CHARS."""
    text = stuck._text("refused 11010119900307663x and 320102198001011234; " + "z" * 500)
    assert "11010119900307663x" not in text and "320102198001011234" not in text
    assert text.startswith("refused 110***********663x and 320***********1234; ")
    assert len(text) == stuck.DETAIL_CHARS
    assert stuck._text("order 1234567890123456789012 shipped") == "order 1234567890123456789012 shipped"


def test_the_chart_has_24_clock_hours_ending_with_the_current_one():
    """Given a time inside an hour, when the chart's edges are computed, then there are 24 buckets of one
    clock hour each, the first starting 23 hours before the current hour, the last holding `now`."""
    now = datetime(2026, 3, 2, 10, 17, 5, tzinfo=timezone.utc)
    edges = overview._hours(now)
    assert len(edges) == overview.HOURS + 1
    assert edges[0] == datetime(2026, 3, 1, 11, tzinfo=timezone.utc)
    assert all(b - a == timedelta(hours=1) for a, b in zip(edges, edges[1:]))
    assert edges[-2] <= now < edges[-1]


def test_the_list_cursor_survives_a_round_trip_to_the_microsecond():
    """Given the last row of a page (a change time with microseconds, an id), when it becomes the opaque cursor
    and is read back, then both are exactly the same, and the cursor is URL-safe without padding."""
    at = datetime(2026, 3, 2, 2, 0, 0, 123456, tzinfo=timezone.utc)
    cursor = sync._cursor(at, "bnd_01jabcdefghjkmnpqrstvwxyz0")
    assert sync._parse_cursor(cursor) == (at, "bnd_01jabcdefghjkmnpqrstvwxyz0")
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor
