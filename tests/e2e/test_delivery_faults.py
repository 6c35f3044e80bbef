"""Outbound webhooks under faults, on the production shape (gunicorn, a dramatiq worker on Redis, the
scheduler, PostgreSQL): the national platform is the simulator's fake receiver (`production.national_receiver`),
which verifies every signature and drops duplicate webhook-ids. The fixture shortens the retry schedule
to seconds (GONGJI_DELIVERY_SCHEDULE_S); the order and accounting asserted here do not depend on it."""
from __future__ import annotations

import re
import subprocess

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from workflows import delivery_repair

from .conftest import SHORT_SCHEDULE
from .support import full_life, gongji_bin, poll

FAMILIES = 4


def _national(engine, binding_ids: list[str]) -> list[tuple]:
    with engine.connect() as c:
        return c.execute(sa.text(
            "select binding_id, binding_version, status from deliveries where platform_id = 'national' "
            "and binding_id = any(:ids) order by binding_id, binding_version"), {"ids": binding_ids}).all()


def _tries_of_dead(engine, binding_ids: list[str]) -> set[int]:
    """The tries taken by each dead national delivery of these bindings."""
    with engine.connect() as c:
        return set(c.execute(sa.text(
            "select attempts from deliveries where platform_id = 'national' and binding_id = any(:ids) "
            "and status = 'dead'"), {"ids": binding_ids}).scalars())


def test_a_platform_down_then_back_gets_every_event_once_in_order_per_binding(production):
    """Given the national platform's receiver gone (its port closed: connection refused)
    When four families live their whole lives (6 versions each) while it is away, and it then comes back
    Then every version of every binding is delivered to it exactly once as a new event, in version order
    per binding; every delivery row ends `delivered`; and the failed tries were recorded. Jiangsu's
    receiver, up all along, got every version in order too: one platform's outage holds up no other."""
    engine = sa.create_engine(production.database_url, poolclass=sa.pool.NullPool)
    receiver = production.national_receiver
    receiver.down()
    try:
        ids = [full_life(production.api(), production.base, "facecheck", production.facecheck_secret)[0]["id"]
               for _ in range(FAMILIES)]
    finally:
        receiver.up()

    tries = len(SHORT_SCHEDULE) + 1  # the fixture's schedule: every try it allows before the dead letter

    def all_delivered():
        rows = _national(engine, ids)
        if any(r.status == "dead" for r in rows):  # the machine was slow: an operator replays, as documented
            # but only after every try was spent: a delivery dead-lettered early would be a bug, not slowness
            assert _tries_of_dead(engine, ids) == {tries}, "a delivery went dead before its tries were spent"
            delivery_repair.replay(sessionmaker(engine), platform_id="national")
        return len(rows) == 6 * FAMILIES and all(r.status == "delivered" for r in rows)

    poll(all_delivered, timeout=120, interval=0.2, what="every national delivery acknowledged")

    def delivered_per_platform():
        with engine.connect() as c:
            return dict(c.execute(sa.text(
                "select platform_id, count(*) from deliveries where binding_id = any(:ids) "
                "and status = 'delivered' group by platform_id"), {"ids": ids}).all())
    # total accounting: every event to both platforms delivered (Jiangsu's receiver was up all along)
    poll(lambda: delivered_per_platform() == {"national": 6 * FAMILIES, "jiangsu": 6 * FAMILIES}, timeout=120,
         interval=0.2, what="every delivery to both platforms acknowledged")
    for bid in ids:
        assert production.province_receiver.versions(bid) == [1, 2, 3, 4, 5, 6], bid
    for bid in ids:
        assert receiver.versions(bid) == [1, 2, 3, 4, 5, 6], bid
    with engine.connect() as c:
        refused = c.execute(sa.text(
            "select count(*) from delivery_attempts a join deliveries d on d.id = a.delivery_id "
            "where d.platform_id = 'national' and d.binding_id = any(:ids) and a.status_code is null"),
            {"ids": ids}).scalar()
        acked = dict(c.execute(sa.text(
            "select binding_id, acked_version from platform_sync where platform_id = 'national' "
            "and binding_id = any(:ids)"), {"ids": ids}).all())
    assert refused >= 1, "the receiver was down, so at least one try found no one listening"
    assert acked == {bid: 6 for bid in ids}
    assert receiver.refused_signatures == 0 and production.province_receiver.refused_signatures == 0
    engine.dispose()


def test_an_operator_sees_dead_deliveries_and_replays_them_from_the_command_line(production):
    """Given the national receiver failing every try (HTTP 503) until a new binding's deliveries are dead
    When the operator runs `gongji deliveries status`, then `gongji deliveries replay --platform national`
    once the receiver is back
    Then the status names the dead deliveries, and after the replay every version arrives, in order."""
    engine = sa.create_engine(production.database_url, poolclass=sa.pool.NullPool)
    receiver = production.national_receiver
    receiver.set_mode("fail", status=503)
    try:
        api = production.api()
        bid = api.invited(api.person("320100"), api.person("320100", insurance_type="resident"), "spouse")["id"]
        poll(lambda: [r.status for r in _national(engine, [bid])] == ["dead"], timeout=120,
             what="the national delivery dead after its retries")
        status = _gongji(production, "deliveries", "status")
        assert re.search(r"^national\s+behind\s+\d+\s+failing\s+\d+\s+dead\s+[1-9]", status, re.M), status
    finally:
        receiver.set_mode("ok")
    replayed = _gongji(production, "deliveries", "replay", "--platform", "national")
    assert "replayed" in replayed
    poll(lambda: [r.status for r in _national(engine, [bid])] == ["delivered"], timeout=120,
         what="the replayed delivery acknowledged")
    assert receiver.versions(bid) == [1]
    engine.dispose()


def _gongji(production, *args: str) -> str:
    done = subprocess.run([gongji_bin(), *args], env=production.env, cwd=production.workdir, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
