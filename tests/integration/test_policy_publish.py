"""Publishing a region's policy (`workflows/policy_admin.py`, `gongji policy publish`) on PostgreSQL: a new
version from the latest with fields changed, in effect from its time on, never rewriting the terms of a
binding already made; refusals write nothing; two publishes at once are ordered by the region's lock;
and the command line on the embedded SQLite default."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from models import AuditEntry, RegionPolicy
from workflows import operators, policy, policy_admin, policy_fields, verification
from workflows.errors import DomainError

from .support import T0, binding, invite, table_snapshot, wait_for_a_lock_wait

pytestmark = pytest.mark.pg

DAY = timedelta(days=1)
SOON = T0 + policy_admin.SWITCH_MARGIN  # the earliest a version published at T0 takes effect


def publish(db, regions, *pairs, at=T0, now=T0, reason="自治区医保局通知", who="tester"):
    return policy_admin.publish(db, list(regions), policy_fields.parse_changes(list(pairs)), effective_from=at,
                                who=who, reason=reason, now=now)


def in_force(db, code, at):
    with db() as s:
        return policy.in_force(s, code, at)


def test_a_version_copies_the_latest_with_its_changes_and_takes_effect_at_its_time(pg_db):
    """Given Xinjiang's two regions at policy version 1,
    when cross-province sharing is published for the province from tomorrow,
    then each region has version 2 = version 1 with that one change, version 1 stays in force until
    tomorrow and version 2 from then, and the audit log holds one entry per region (who, why, what)."""
    before = in_force(pg_db, "650100", T0)

    out = publish(pg_db, ["650100", "652900"], "cross_province=true", at=T0 + DAY)

    assert [(v["code"], v["policy_version"], v["cross_province"]) for v in out] == [
        ("650100", 2, True), ("652900", 2, True)]
    assert in_force(pg_db, "650100", T0 + DAY - timedelta(seconds=1)).id == before.id
    after = in_force(pg_db, "650100", T0 + DAY)
    assert after.version == 2 and after.cross_province is True
    same = {k: v for k, v in vars(after).items() if k not in ("id", "version", "effective_from", "cross_province")}
    assert same == {k: v for k, v in vars(before).items() if k in same}
    log = operators.audit_log(pg_db)["items"]
    assert [(e["operator"], e["action"], e["reason"], e["detail"]["region_code"], e["detail"]["version"],
             e["detail"]["changes"]) for e in reversed(log)] == [
        ("cli:tester", "policy_publish", "自治区医保局通知", code, 2, {"cross_province": True})
        for code in ("650100", "652900")]
    assert [v["in_force"] for v in policy_admin.versions(pg_db, "650100", now=T0 + DAY)] == [True, False]


def test_a_new_version_applies_to_new_invitations_and_not_to_the_terms_of_bindings_made_before(pg_db, family):
    """Given an invitation made under 南京's version 1 (letter JS-2024-01, three face-verification attempts),
    when version 2 (letter JS-2027-01, one attempt) takes effect,
    then an invitation signed under the old letter is refused (commitment_required) and one under the new
    letter is made under version 2, where one failed attempt ends it (verification_failed); the earlier
    invitation keeps its three: one failed attempt leaves it invited."""
    early = invite(pg_db, family(pg_db), now=T0)["id"]

    publish(pg_db, ["320100"], "commitment_version=JS-2027-01", "max_verification_attempts=1", at=T0 + DAY)

    later = T0 + DAY + timedelta(minutes=1)
    with pytest.raises(DomainError) as refused:
        invite(pg_db, family(pg_db), now=later)
    assert refused.value.code == "commitment_required"
    fam = family(pg_db)
    made = invite(pg_db, fam, commitment_version="JS-2027-01", now=later)["id"]
    assert binding(pg_db, made).policy_id == in_force(pg_db, "320100", later).id != binding(pg_db, early).policy_id
    assert fail_once(pg_db, made, fam_of(pg_db, made), later) == "verification_failed"
    assert fail_once(pg_db, early, fam_of(pg_db, early), later) == "invited"


def fam_of(db, binding_id):
    with db() as s:
        return s.scalar(sa.text("SELECT p.id FROM bindings b JOIN persons p ON p.id = b.beneficiary_id "
                                "WHERE b.id = :b"), {"b": binding_id})


def fail_once(db, binding_id, beneficiary_id, now):
    """The beneficiary opens a face verification and the provider says it failed; the binding's state."""
    started = verification.start_verification(db, binding_id, {"kind": "person", "id": beneficiary_id}, now=now)
    verification.record_verification_result(db, verification_id=started["verification_id"], binding_id=binding_id,
                                            result="failed", verifier_id="facecheck", now=now)
    return binding(db, binding_id).state


def test_a_version_another_process_published_is_found_for_its_bindings(pg_db):
    """Given this process's cached versions of 乌鲁木齐 (1 and 2), and a version 3 written meanwhile by another
    process (this cache not cleared), when a binding made under version 3 asks for its policy (`by_id`),
    then it gets version 3, read fresh, not the cached version in force."""
    publish(pg_db, ["650100"], "cross_province=true")
    assert in_force(pg_db, "650100", SOON).version == 2  # cached now
    with pg_db.begin() as s:
        v2 = s.scalars(sa.select(RegionPolicy).where(RegionPolicy.region_code == "650100",
                                                     RegionPolicy.version == 2)).one()
        columns = {c.name: getattr(v2, c.name) for c in RegionPolicy.__table__.columns if c.name != "id"}
        v3 = RegionPolicy(**{**columns, "version": 3, "max_verification_attempts": 7})
        s.add(v3)
        s.flush()
        v3_id = v3.id
    with pg_db() as s:
        assert policy.by_id(s, v3_id, "650100", SOON).max_verification_attempts == 7
        assert policy.in_force(s, "650100", SOON).version == 2  # the cache, until CACHE_S has passed


@pytest.mark.parametrize("regions, pairs, at, code, says", [
    (["650100"], ["cross_province=true"], T0 - timedelta(minutes=5), "validation_failed", "in the past"),
    (["650100"], ["cross_province=true"], T0.replace(tzinfo=None), "validation_failed", "UTC offset"),
    (["650100", "999999"], ["cross_province=true"], T0, "not_found", "999999"),  # all or none
    ([], ["cross_province=true"], T0, "validation_failed", "at least one region"),
    (["320100"], ["allowed_relationships=spouse,parent"], T0, "validation_failed", "320100: allowed_relationships"),
])
def test_a_refused_publish_writes_nothing(pg_db, regions, pairs, at, code, says):
    """Given the seeded policies, when a publish is in the past, without an offset, names an unknown region
    beside a known one, or no region, then it is refused with its code and no table changed."""
    before = table_snapshot(pg_db)
    with pytest.raises(DomainError) as refused:
        publish(pg_db, regions, *pairs, at=at)
    assert refused.value.code == code and says in refused.value.detail
    assert table_snapshot(pg_db) == before


def test_who_and_why_are_required(pg_db):
    """Given the seeded policies, when a publish names nobody (or someone longer than the audit log keeps) or
    gives a blank reason, then it is refused and nothing is written."""
    before = table_snapshot(pg_db)
    for who, reason, says in (("", "通知", "--by"), ("x" * 61, "通知", "--by"), ("zhang", "  ", "reason")):
        with pytest.raises(DomainError) as refused:
            publish(pg_db, ["650100"], "cross_province=true", who=who, reason=reason)
        assert refused.value.code == "validation_failed" and says in refused.value.detail
    assert table_snapshot(pg_db) == before


def test_a_time_a_moment_ago_counts_as_now_and_every_process_switches_at_once(pg_db):
    """Given a publish whose effective_from was typed 30 s ago (within the minute allowed), or is now, or is
    a minute ahead, when published at T0, then each takes effect 90 s after T0 (policy.CACHE_S and a minute
    of clock skew): every process has read it by then, so none judges by the old version after another
    switched (a commitment letter one process asks for and another refuses); one 2 minutes ahead keeps its time."""
    for typed, region in ((T0 - timedelta(seconds=30), "650100"), (T0, "652900"),
                          (T0 + timedelta(minutes=1), "320100")):
        out = publish(pg_db, [region], "frequency_max_changes=5", at=typed)
        assert out[0]["effective_from"] == SOON.isoformat() == (T0 + timedelta(seconds=90)).isoformat()
    later = publish(pg_db, ["320500"], "frequency_max_changes=5", at=T0 + timedelta(minutes=2))
    assert later[0]["effective_from"] == (T0 + timedelta(minutes=2)).isoformat()
    assert in_force(pg_db, "650100", SOON - timedelta(seconds=1)).version == 1


def test_versions_take_effect_in_order_and_a_pending_one_can_be_corrected_or_withdrawn(pg_db):
    """Given version 2 of 乌鲁木齐 pending (in two days),
    when version 3 is published for tomorrow, then it is refused (versions take effect in order);
    when version 3 is published for the same time, then it builds on version 2 (both changes) and wins
    from then on; when the in-force version 1 or the non-latest version 2 is withdrawn, then refused;
    when the pending version 3 is withdrawn, then version 2 is the latest again, and the withdrawal is in
    the audit log with the fields it had and what it changed; and the seed run again adds nothing."""
    publish(pg_db, ["650100"], "cross_province=true", at=T0 + 2 * DAY)
    with pytest.raises(DomainError) as refused:
        publish(pg_db, ["650100"], "frequency_max_changes=4", at=T0 + DAY)
    assert refused.value.code == "validation_failed" and "version 2" in refused.value.detail

    v3 = publish(pg_db, ["650100"], "frequency_max_changes=4", at=T0 + 2 * DAY)[0]
    assert (v3["policy_version"], v3["cross_province"], v3["frequency_limit"]["max_changes"]) == (3, True, 4)
    assert in_force(pg_db, "650100", T0 + 2 * DAY).version == 3

    for version in (1, 2):
        with pytest.raises(DomainError) as refused:
            policy_admin.withdraw(pg_db, "650100", version, who="tester", reason="wrong", now=T0)
        assert refused.value.code == "illegal_transition"
    gone = policy_admin.withdraw(pg_db, "650100", 3, who="tester", reason="打错了", now=T0)
    assert gone["fields"]["frequency_max_changes"] == 4 and gone["changes"] == {"frequency_max_changes": 4}
    assert [v["policy_version"] for v in policy_admin.versions(pg_db, "650100", now=T0)] == [2, 1]
    assert in_force(pg_db, "650100", T0 + 2 * DAY).version == 2
    last = operators.audit_log(pg_db)["items"][0]
    assert (last["action"], last["operator"], last["reason"], last["detail"]["version"]) == (
        "policy_withdraw", "cli:tester", "打错了", 3)
    from models import seed
    with pg_db.begin() as s:
        seed.seed_regions(s)
    assert [v["policy_version"] for v in policy_admin.versions(pg_db, "650100", now=T0)] == [2, 1]


def test_two_publishes_at_once_are_ordered_by_the_regions_lock(pg_db):
    """Given the 乌鲁木齐 region row held locked by another transaction, and two publishes for it waiting
    on that lock (seen in pg_stat_activity),
    when the lock is released,
    then both succeed, one after the other: versions 2 and 3, the later one built on the earlier (both
    changes in version 3), never two versions 2."""
    holder = pg_db.kw["bind"].connect()
    holder.begin()
    holder.execute(sa.text("SELECT code FROM regions WHERE code = '650100' FOR NO KEY UPDATE"))
    results = {}

    def run(name, pair):
        try:
            results[name] = publish(pg_db, ["650100"], pair)[0]["policy_version"]
        except Exception as exc:  # noqa: BLE001 - reported below
            results[name] = exc

    threads = [threading.Thread(target=run, args=(n, p), daemon=True)
               for n, p in (("cross", "cross_province=true"), ("cap", "max_beneficiaries_per_grantor=4"))]
    for i, t in enumerate(threads):
        t.start()
        wait_for_a_lock_wait(pg_db, at_least=i + 1, on="regions")
    holder.rollback()
    holder.close()
    for t in threads:
        t.join(60)

    assert sorted(results.values()) == [2, 3], results
    latest = in_force(pg_db, "650100", SOON)
    assert (latest.version, latest.cross_province, latest.max_beneficiaries_per_grantor) == (3, True, 4)
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(RegionPolicy)
                        .where(RegionPolicy.region_code == "650100")) == 3
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == 2


def test_the_command_line_publishes_and_shows_on_the_embedded_default(tmp_path, monkeypatch, crypto_keys):
    """Given a fresh embedded database (SQLite under ./var), when `gongji policy publish --province 65 --set
    cross_province=true --set commitment_version=XJ-2027-01 --reason …` runs, then both Xinjiang regions get
    version 2 and `gongji policy show 652900` lists it pending (for 90 s) above version 1 in force; a bad value is a usage error
    (exit 1) that names the field, a publish without --by is refused (exit 2), and a version published for
    the wrong year shows as pending, says until when it can be withdrawn, and is withdrawn; one published at
    the default time says that it cannot be, and a withdrawal says how to undo it instead."""
    from web.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GONGJI_DATABASE_URL", raising=False)
    runner = CliRunner()
    done = runner.invoke(main, ["policy", "publish", "--province", "65", "--set", "cross_province=true",
                                "--set", "commitment_version=XJ-2027-01", "--reason", "通知", "--by", "zhang"])
    assert done.exit_code == 0, done.output
    assert "650100 乌鲁木齐市: version 2" in done.output and "652900 阿克苏地区: version 2" in done.output
    # at the default (and earliest) time a version is too close to be withdrawn: said at once, and again by
    # a withdrawal, which names the way out rather than "only the latest" (it is the latest)
    assert done.output.count("takes effect too soon to be withdrawn: to undo it, publish a new version") == 2
    late = runner.invoke(main, ["policy", "withdraw", "652900", "2", "--reason", "typo", "--by", "zhang"])
    assert late.exit_code == 1 and "publish a new version to undo it" in late.output, late.output
    assert "only the latest" not in late.output
    shown = runner.invoke(main, ["policy", "show", "652900"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "version 2" in lines[0] and lines[0].endswith("pending")  # for 90 s: every process switches at once
    assert "commitment_version: XJ-2027-01" in shown.output and "cross_province: true" in shown.output
    assert "allowed_relationships: spouse,parent,child" in shown.output  # as --set takes it back
    assert any("version 1" in line and line.endswith("in force") for line in lines)
    bad = runner.invoke(main, ["policy", "publish", "--region", "650100", "--set", "cross_province=maybe",
                               "--reason", "x", "--by", "zhang"])
    assert bad.exit_code == 1 and "cross_province is true or false" in bad.output
    nobody = runner.invoke(main, ["policy", "publish", "--region", "650100", "--set", "cross_province=true",
                                  "--reason", "x"])
    assert nobody.exit_code == 2 and "--by" in nobody.output  # who publishes is not optional
    ahead = runner.invoke(main, ["policy", "publish", "--region", "650100", "--set", "frequency_max_changes=4",
                                 "--effective-from", "2207-01-01T00:00:00+08:00", "--reason", "x", "--by", "zhang"])
    assert ahead.exit_code == 0 and "version 3 from 2207-01-01T00:00:00+08:00" in ahead.output
    assert "can be withdrawn until 2206-12-31T23:58:30+08:00" in ahead.output
    assert "pending" in runner.invoke(main, ["policy", "show", "650100"]).output.splitlines()[0]
    undone = runner.invoke(main, ["policy", "withdraw", "650100", "3", "--reason", "a typo in the year",
                                  "--by", "zhang"])
    assert undone.exit_code == 0 and "version 3" in undone.output and "withdrawn" in undone.output
    assert undone.output.rstrip().endswith("it would have set frequency_max_changes=4")


def test_a_version_the_seed_file_gains_later_is_not_added_beside_published_ones(pg_db, tmp_path, monkeypatch):
    """Given 乌鲁木齐 at a published version 2, when a later release's seed file carries Xinjiang's policy as
    version 3 (effective earlier, without the published change) and the seed runs again, then nothing is
    added: the file gives a region its first version only, so it can neither shadow nor skip what was
    published."""
    import json

    from models import seed
    publish(pg_db, ["650100"], "cross_province=true")
    data = json.loads(seed.DATA.read_text(encoding="utf-8"))
    for province in data["provinces"]:
        province["policy"]["version"] = 3
    newer = tmp_path / "regions.json"
    newer.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setattr(seed, "DATA", newer)

    with pg_db.begin() as s:
        seed.seed_regions(s)

    assert [v["policy_version"] for v in policy_admin.versions(pg_db, "650100", now=T0)] == [2, 1]
    assert in_force(pg_db, "650100", SOON).cross_province is True


def test_a_version_about_to_take_effect_can_no_longer_be_withdrawn(pg_db):
    """Given version 2 of 乌鲁木齐 taking effect in 60 s (other processes may already have it cached and a
    clock a minute ahead), when it is withdrawn, then refused (illegal_transition) and it stays; one taking
    effect in 100 s (past the 90 s margin) can be."""
    publish(pg_db, ["650100"], "cross_province=true", at=T0 + timedelta(seconds=60))
    with pytest.raises(DomainError) as refused:
        policy_admin.withdraw(pg_db, "650100", 2, who="tester", reason="late", now=T0)
    assert refused.value.code == "illegal_transition" and "90 s" in refused.value.detail
    assert [v["policy_version"] for v in policy_admin.versions(pg_db, "650100", now=T0)] == [2, 1]
    publish(pg_db, ["650100"], "frequency_max_changes=4", at=T0 + timedelta(seconds=100))
    assert policy_admin.withdraw(pg_db, "650100", 3, who="tester", reason="early enough", now=T0)["version"] == 3
