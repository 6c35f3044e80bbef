"""The workflow gauges of `/metrics` on real PostgreSQL (`workflows.gauges`, `web.metrics`), and the alert
rules of docs/alerts.yml against a real scrape.

One scenario serves every test: a Jiangsu invitation whose province platform answered 503 to every try
(its delivery dead, the national platform's delivered), a second invitation nobody fanned out yet, and a
`person.updated` webhook from Jiangsu stored and not processed. Both invitations are from T0 (months ago),
so their invitation timers are overdue by now: the sweeper never ran here."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from dramatiq.brokers.stub import StubBroker
from prometheus_client.parser import text_string_to_metric_families

from models.settings import Settings
from models.types import utcnow
from web.app import create_app
from workers import queues
from workflows import deliveries, gauges, platforms, stuck, sync, webhooks

from .support import T0, fan_out_all, invite
from .test_stuck import answer

pytestmark = pytest.mark.pg
HOOK = "http://127.0.0.1:9/never-called"  # deliveries are recorded by the test: nothing is sent there
ALERTS = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"


@pytest.fixture
def scenario(pg_db, family):
    for pid in ("national", "jiangsu", "xinjiang"):
        platforms.set_webhook_url(pg_db, pid, HOOK)
    invite(pg_db, family(pg_db))
    now, ready = T0, fan_out_all(pg_db, T0)
    for delay in (0,) + deliveries.SCHEDULE_S:  # every try of Jiangsu's delivery fails: dead after the last
        now += timedelta(seconds=delay)
        answer(pg_db, ready + deliveries.due(pg_db, now=now), now, {"jiangsu": 503})
        ready = []
    invite(pg_db, family(pg_db), now=T0 + timedelta(minutes=1))  # its event stays in the outbox
    with pg_db() as s:
        jiangsu = next(p for p in platforms.all_platforms(s) if p.id == "jiangsu")
    webhooks.receive(pg_db, platform=jiangsu, webhook_id="msg_gauges_1", body=b'{"type":"person.updated","data":{}}',
                     headers={}, event_type="person.updated")
    gauges.forget()
    yield pg_db
    gauges.forget()


def test_a_reading_counts_what_is_stuck_behind_and_waiting(scenario):
    """Given the scenario, When the gauges are read now,
    Then both invitations are overdue, one is stuck on a dead delivery; Jiangsu lacks one event (dead) since
    T0 but has none being tried, the others lack nothing; Jiangsu has one webhook no worker tried yet; two
    outbox events wait, since T0."""
    now = utcnow()
    r = gauges.read(scenario, now=now)
    assert {k: v for k, v in r.stuck.items() if v} == {"timer_overdue": 2, "delivery_dead": 1}
    assert set(r.stuck) == set(stuck.REASONS)
    assert set(r.platforms) == {"national", "jiangsu", "xinjiang"}
    js = r.platforms["jiangsu"]
    assert (js["behind"], js["dead"], js["failing"]) == (1, 1, 0)
    assert js["oldest_age_s"] >= (now - T0).total_seconds() - 1
    assert js["oldest_open_age_s"] == 0.0  # the dead one waits for a replay: nothing is being tried
    assert r.platforms["national"] == sync.NOTHING_BEHIND
    assert (r.inbound["jiangsu"]["pending"], r.inbound["national"]["pending"]) == (1, 0)
    assert 0 <= r.inbound["jiangsu"]["oldest_untried_age_s"] < 600
    assert (r.outbox["unprocessed"], r.outbox["with_error"]) == (2, 0)
    assert r.outbox["oldest_age_s"] >= (now - T0 - timedelta(minutes=1)).total_seconds() - 1


def _scrape(db, broker=None) -> dict[tuple, float]:
    """(sample name, sorted labels) → value, from /metrics after one /healthz (so a request was counted);
    with `broker`, its queue depth is wired as `gongji serve` wires its in-process one."""
    settings = Settings.from_env(var_dir="/tmp/gongji-unused")
    app = create_app(settings, db=db, engine=None)
    if broker is not None:
        app.extensions["gongji"]["queue_depth"] = lambda: queues.depth(broker)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    answer_ = client.get("/metrics")
    assert answer_.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(answer_.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_the_scrape_has_the_gauges_with_their_labels(scenario):
    """Given the scenario, When /metrics is fetched (Flask's client, PostgreSQL behind),
    Then the Prometheus text parses and carries the reading: per stuck reason, per platform, the inbound and
    outbox backlogs, and that the gauges were read (up 1)."""
    got = _scrape(scenario)
    assert got[("gongji_workflow_gauges_up", ())] == 1
    assert got[("gongji_bindings_stuck", (("reason", "delivery_dead"),))] == 1
    assert got[("gongji_bindings_stuck", (("reason", "timer_overdue"),))] == 2
    assert got[("gongji_bindings_stuck", (("reason", "worker_error"),))] == 0
    assert got[("gongji_platform_deliveries_dead", (("platform", "jiangsu"),))] == 1
    assert got[("gongji_platform_unacknowledged", (("platform", "national"),))] == 0
    assert got[("gongji_platform_oldest_open_delivery_age_seconds", (("platform", "jiangsu"),))] == 0
    assert got[("gongji_inbound_webhooks_pending", (("platform", "jiangsu"),))] == 1
    assert 0 <= got[("gongji_inbound_webhooks_oldest_untried_age_seconds", (("platform", "jiangsu"),))] < 600
    assert got[("gongji_outbox_unprocessed", ())] == 2
    assert ("gongji_queue_messages", (("state", "ready"),)) not in got  # no broker wired in this app


def test_a_failed_read_still_answers_the_scrape():
    """Given a database that does not answer (a session factory on a closed port),
    When /metrics is fetched, Then 200: the HTTP counts are there and gongji_workflow_gauges_up is 0."""
    import sqlalchemy as sa
    from sqlalchemy.orm import sessionmaker

    dead = sa.create_engine("postgresql+psycopg://gongji@127.0.0.1:9/none", connect_args={"connect_timeout": 2})
    gauges.forget()
    got = _scrape(sessionmaker(bind=dead))
    assert got[("gongji_workflow_gauges_up", ())] == 0
    assert not any(name == "gongji_bindings_stuck" for name, _ in got)
    assert got[("gongji_http_requests_total", (("endpoint", "/healthz"), ("method", "GET"), ("status", "200")))] >= 1
    dead.dispose()


def test_every_alert_rule_names_what_the_scrape_has(scenario):
    """Given docs/alerts.yml (Prometheus rule groups), When its expressions are read against a real scrape,
    Then every rule has an alert name, an expression, a severity and a summary; every gongji_ metric an
    expression names is in the scrape (counters by their _total samples); every label value it selects on
    (reason, state) is one the scrape has."""
    got = _scrape(scenario, broker=StubBroker())
    names = {name for name, _ in got}
    labels = {(k, v) for _, items in got for k, v in items}
    rules = [r for group in yaml.safe_load(ALERTS.read_text())["groups"] for r in group["rules"]]
    assert len(rules) >= 8
    for rule in rules:
        assert rule["alert"].startswith("Gongji") and rule["expr"]
        assert rule["labels"]["severity"] in ("page", "ticket") and rule["annotations"]["summary"]
        for metric in re.findall(r"\b(gongji_[a-z_]+)", rule["expr"]):
            assert metric in names, (rule["alert"], metric)
        for key, value in re.findall(r'\b(reason|state|platform|process)="([a-z_]+)"', rule["expr"]):
            assert (key, value) in labels, (rule["alert"], key, value)
