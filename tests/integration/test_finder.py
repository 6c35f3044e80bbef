"""The dashboard's list (`finder`) and overview on real PostgreSQL, and once on an SQLite file migrated like
the embedded default: keyset pages return every row exactly once for each filter path, a person is found
by ID number without the number (or a name) in anything returned, and the overview counts what is there."""
from __future__ import annotations

from datetime import timedelta

import pytest

from workflows import commands, finder, overview, platforms, stuck, sync
from workflows.errors import DomainError
from workflows.idnumbers import with_check_digit

from .support import T0, TTL, invite, person

XJ = "XJ-2023-02"
OVERDUE = T0 + TTL + timedelta(seconds=stuck.GRACE_S + 10)  # every invitation of `_world` (T0..T0+3 s) is overdue


def _pages(db, limit: int, **filters) -> list[str]:
    ids, after = [], None
    while True:
        page = finder.find(db, after=after, limit=limit, now=T0 + timedelta(days=1), **filters)
        assert len(page["items"]) <= limit
        ids += [item["id"] for item in page["items"]]
        if page["next"] is None:
            return ids
        after = page["next"]


def _world(db, family) -> dict[str, dict]:
    """Eleven bindings, three at a time sharing a change time (ties broken by id), over Nanjing, Suzhou and
    Urumqi (one Nanjing grantor's beneficiary insured in Suzhou); two of the Nanjing ones cancelled later.
    {id: {region, other (the beneficiary's region), state, updated}}."""
    made = {}
    for i in range(11):
        region = ("320100", "320500", "650100")[i % 3]
        other = "320500" if i == 9 else region
        fam = family(db, region=region, beneficiary_region=other)
        at = T0 + timedelta(seconds=i // 3)
        bid = invite(db, fam, now=at, **({"commitment_version": XJ} if region == "650100" else {}))["id"]
        made[bid] = {"region": region, "other": other, "state": "invited", "updated": at, "fam": fam}
    for n, (bid, row) in enumerate([(b, r) for b, r in made.items() if r["region"] == "320100"][:2]):
        at = T0 + timedelta(minutes=5, seconds=n)
        commands.cancel(db, bid, person(row["fam"].grantor), now=at)
        row.update(state="cancelled", updated=at)
    return made


def _newest_first(made: dict, keep=lambda row: True) -> list[str]:
    return [bid for bid, row in sorted(made.items(), key=lambda kv: (kv[1]["updated"], kv[0]), reverse=True)
            if keep(row)]


def _in(region: str):
    return lambda r: region in (r["region"], r["other"])  # the grantor's or the beneficiary's region


FILTERS = [  # each takes a different path: none, state, region (merged walks), region and state, platform
    ({}, lambda r: True),
    ({"state": "invited"}, lambda r: r["state"] == "invited"),
    ({"region": "320100"}, _in("320100")),
    ({"region": "320100", "state": "invited"}, lambda r: _in("320100")(r) and r["state"] == "invited"),
    ({"region": "320500"}, _in("320500")),  # the Nanjing grantor's Suzhou beneficiary is here too
    ({"region": "320500", "state": "invited"}, lambda r: _in("320500")(r) and r["state"] == "invited"),
    ({"platform": "jiangsu"}, lambda r: r["region"].startswith("32")),
    ({"platform": "national"}, lambda r: True),
    ({"older_than_s": 86400 - 2}, lambda r: r["updated"] < T0 + timedelta(seconds=2)),
]


@pytest.mark.parametrize("filters,keep", FILTERS, ids=["&".join(f"{k}={v}" for k, v in f.items()) or "none"
                                                       for f, _ in FILTERS])
def test_keyset_pages_return_every_row_once_in_order(pg_db, family, filters, keep):
    """Given eleven bindings with tied change times across three regions and two states,
    when a filter is paged through two rows at a time,
    then every matching binding comes exactly once, newest change first (ties by id), and `count` agrees."""
    made = _world(pg_db, family)
    expected = _newest_first(made, keep)
    assert _pages(pg_db, 2, **filters) == expected
    assert _pages(pg_db, 50, **filters) == expected
    assert finder.count(pg_db, now=T0 + timedelta(days=1), **filters) == len(expected)


def test_an_item_shows_persons_masked_and_what_the_list_needs(pg_db, family):
    """Given one invitation,
    when it is listed,
    then the item has its fields, persons by masked ID number and name only, and no stuck reason."""
    fam = family(pg_db)
    bid = invite(pg_db, fam)["id"]
    (item,) = finder.find(pg_db, now=T0)["items"]
    assert set(item) == {"id", "state", "relationship", "grantor", "beneficiary", "created_at", "updated_at",
                         "province_code", "grantor_region", "beneficiary_region", "platform_id", "version", "stuck"}
    assert (item["id"], item["state"], item["version"], item["stuck"]) == (bid, "invited", 1, [])
    assert item["created_at"] == item["updated_at"] == T0
    assert item["grantor"]["id_number_masked"] == fam.grantor[:3] + "*" * 11 + fam.grantor[-4:]
    assert item["beneficiary"]["name_masked"].startswith(fam.beneficiary_name[0])
    for secret in (fam.grantor, fam.beneficiary, fam.grantor_name, fam.beneficiary_name):
        assert secret not in str(item)


def test_a_person_is_found_by_id_number_which_appears_nowhere_in_the_answer(pg_db, family):
    """Given a grantor with two bindings and a beneficiary with one of them,
    when each is looked up by ID number (spaces and a lower-case x tolerated),
    then each finds exactly their bindings, and neither the number nor a name is in the answer;
    an invalid number is refused (invalid_id_number), an unknown valid one finds nothing."""
    first = family(pg_db)
    second = family(pg_db, grantor=(first.grantor, first.grantor_name))
    b1 = invite(pg_db, first)["id"]
    b2 = invite(pg_db, second, now=T0 + timedelta(seconds=1))["id"]
    page = finder.find(pg_db, id_number=f"  {first.grantor.lower()} ", now=T0)
    assert [i["id"] for i in page["items"]] == [b2, b1]
    assert [i["id"] for i in finder.find(pg_db, id_number=second.beneficiary, now=T0)["items"]] == [b2]
    assert finder.count(pg_db, id_number=first.grantor, now=T0) == 2
    for secret in (first.grantor, first.beneficiary, second.beneficiary, first.grantor_name):
        assert secret not in str(page)
    with pytest.raises(DomainError) as refused:
        finder.find(pg_db, id_number=first.grantor[:-1] + ("0" if first.grantor[-1] != "0" else "1"), now=T0)
    assert refused.value.code == "invalid_id_number"
    assert first.grantor not in str(refused.value)
    nobody = with_check_digit("11010119900101" + "999")
    assert finder.find(pg_db, id_number=nobody, now=T0) == {"items": [], "next": None}


def test_bad_filters_and_cursors_are_refused(pg_db):
    """Given the list,
    when a filter names an unknown state, reason, region shape or a verifier platform, or the cursor is not one,
    then each is refused with a clear code and nothing is read."""
    for bad in ({"state": "sleeping"}, {"stuck": "bored"}, {"region": "32"}, {"platform": "facecheck"},
                {"after": "not-a-cursor!"}):
        with pytest.raises(DomainError) as refused:
            finder.find(pg_db, now=T0, **bad)
        assert refused.value.code == "validation_failed", bad
    with pytest.raises(DomainError) as unknown:
        finder.find(pg_db, platform="nowhere", now=T0)
    assert unknown.value.code == "not_found"


def test_the_overview_counts_states_regions_stuck_and_the_last_24_hours(pg_db, family):
    """Given the eleven bindings (two cancelled) and one invitation left overdue,
    when the overview is read a day after,
    then states add up, regions count a binding across two regions in both, the overdue one is counted stuck, the hours hold the transitions,
    and the platforms are listed with no lag."""
    _world(pg_db, family)
    o = overview.overview(pg_db, now=OVERDUE)
    assert set(o) == {"as_of", "counts_as_of", "total", "active", "states", "regions", "stuck", "hourly",
                      "platforms"}
    assert o["as_of"] == o["counts_as_of"] == OVERDUE
    assert (o["total"], o["active"]) == (11, 9)
    assert o["states"]["invited"] == 9 and o["states"]["cancelled"] == 2 and o["states"]["unbound"] == 0
    regions = {r["code"]: r for r in o["regions"]}
    assert set(regions) == {"320100", "320500", "650100", "652900"}
    assert regions["320100"]["states"]["cancelled"] == 2 and regions["320100"]["active"] == 2
    # the binding across Nanjing and Suzhou counts in both regions (and once in the states)
    assert (regions["320100"]["total"], regions["320500"]["total"], regions["650100"]["total"]) == (4, 5, 3)
    assert regions["652900"]["total"] == 0 and regions["650100"]["name"]
    assert o["stuck"] == {**dict.fromkeys(stuck.REASONS, 0), "timer_overdue": 9}
    assert o["platforms"] == {p: sync.NOTHING_BEHIND for p in ("jiangsu", "national", "xinjiang")}
    assert sync.NOTHING_BEHIND == {"behind": 0, "dead": 0, "failing": 0, "oldest_age_s": 0.0, "oldest_open_age_s": 0.0}
    assert len(o["hourly"]) == 24 and sum(h["transitions"] for h in o["hourly"]) == 0  # all 7 days ago
    day = overview.overview(pg_db, now=T0 + timedelta(hours=1))["hourly"]
    assert [h["hour"] for h in day][-2:] == [T0, T0 + timedelta(hours=1)]
    assert (day[-2]["transitions"], day[-2]["failures"]) == (13, 0)


def test_a_live_overview_takes_the_whole_table_counts_from_a_snapshot_of_at_most_a_minute(pg_db, family,
                                                                                           monkeypatch):
    """Given one invitation and a live overview read (no `now`),
    when a second invitation is made and the overview read again within SNAPSHOT_S, then after it,
    then the second read still shows the snapshot's counts with its time, and the third the new ones."""
    invite(pg_db, family(pg_db))
    first = overview.overview(pg_db)
    invite(pg_db, family(pg_db), now=T0 + timedelta(seconds=1))
    again = overview.overview(pg_db)
    assert (first["total"], again["total"], again["counts_as_of"]) == (1, 1, first["counts_as_of"])
    monkeypatch.setattr(overview, "SNAPSHOT_S", 0.0)
    assert overview.overview(pg_db)["total"] == 2


def test_on_sqlite_the_list_counts_and_overview_work_as_on_postgresql(sqlite_db, family):
    """Given an SQLite file migrated and seeded like the embedded default, with the eleven bindings,
    when the list is paged through each filter path, a person looked up, and the overview read,
    then the answers are the same as on PostgreSQL."""
    made = _world(sqlite_db, family)
    for filters, keep in FILTERS:
        assert _pages(sqlite_db, 2, **filters) == _newest_first(made, keep), filters
    some = next(iter(made.values()))["fam"]
    assert len(finder.find(sqlite_db, id_number=some.grantor, now=T0)["items"]) == 1
    for pid in ("national", "jiangsu", "xinjiang"):  # push targets: sync_behind's SQL runs on SQLite too
        platforms.set_webhook_url(sqlite_db, pid, "http://127.0.0.1:9/never-called")
    assert [i["id"] for i in finder.find(sqlite_db, stuck="timer_overdue", limit=3, now=OVERDUE)["items"]] == \
        _newest_first(made, lambda r: r["state"] == "invited")[:3]
    assert finder.count(sqlite_db, stuck="timer_overdue", now=OVERDUE) == 9
    cancelled = _newest_first(made, lambda r: r["state"] == "cancelled")  # changed inside the window, never sent
    assert [i["id"] for i in finder.find(sqlite_db, stuck="sync_behind", now=OVERDUE)["items"]] == cancelled
    o = overview.overview(sqlite_db, now=OVERDUE)
    assert (o["total"], o["active"], o["stuck"]["timer_overdue"]) == (11, 9, 9)
    assert sum(r["total"] for r in o["regions"]) == 12  # the binding across two regions in both
    assert overview.overview(sqlite_db, now=T0 + timedelta(hours=1))["hourly"][-2]["transitions"] == 13
