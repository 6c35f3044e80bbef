"""A text with a character no field may hold (a NUL, another control, a direction mark: workflows/characters.py)
is answered the same on the embedded default's SQLite and on PostgreSQL, which cannot store a NUL: refused
up front, the field named, the value never echoed; nothing written. Before, SQLite stored it (201) and
PostgreSQL refused it after the fact (422, naming no field)."""
from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from models import Person, ReceivedWebhook
from models.seed import dev_credentials
from models.settings import Settings
from models.types import utcnow
from web.app import create_app
from workflows import platforms, webhooks
from workflows.idnumbers import with_check_digit

from .support import accepted, invite

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: 张三 shown turned around


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request):
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")


def _client(db, crypto_keys):
    settings = Settings(database_url="sqlite://", redis_url=None, pii_keys=crypto_keys["pii_keys"],
                        pii_active_key=crypto_keys["active"], lookup_key=crypto_keys["lookup_key"],
                        secret_key="test-secret", dev_mode=True)
    app = create_app(settings, db=db, engine=None)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app.test_client(), {"Authorization": f"Bearer {dev_credentials('jiangsu')[0]}"}


def _person(number: str, name: str) -> dict:
    return {"id_number": number, "name": name, "insurance_type": "employee", "insurance_status": "active",
            "region_code": "320100", "real_name_verified": True}


def _persons(db) -> int:
    with db() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(Person))


@pytest.mark.parametrize("name", ["\x00张三", f"{RLO}张三", "张\n三", "张\x07三", "张\x85三"])
def test_a_name_with_a_control_or_direction_character_is_refused_on_both_backends(any_db, crypto_keys, name):
    """Given either backend, When a platform registers a person whose name holds a NUL, a direction override,
    a line break, a bell or a C1 control, Then 422 validation_failed naming `name` (not the value), and no
    person is written."""
    client, auth = _client(any_db, crypto_keys)
    before = _persons(any_db)
    answer = client.post("/api/v1/persons", json=_person(with_check_digit("32010219800101123"), name), headers=auth)
    problem = answer.get_json()
    assert answer.status_code == 422 and problem["code"] == "validation_failed"
    assert [e["loc"] for e in problem["errors"]] == ["name"] and "张" not in answer.get_data(as_text=True)
    assert _persons(any_db) == before


def test_settlement_fields_an_actor_and_a_reason(any_db, crypto_keys, family):
    """Given either backend, When a settlement's reference and institution hold a NUL, an actor's id a
    direction mark, or a reason a NUL, Then each is 422 naming its field; a reason over several lines is
    a reason (accepted)."""
    client, auth = _client(any_db, crypto_keys)
    fam_number = with_check_digit("32010219800101124")
    settle = client.post("/api/v1/settlements", headers=auth, json={
        "reference": "r\x00x", "beneficiary_id_number": fam_number, "amount_fen": 100, "category": "pharmacy",
        "institution_code": "H\x00"})
    assert settle.status_code == 422
    assert sorted(e["loc"] for e in settle.get_json()["errors"]) == ["institution_code", "reference"]
    fam = family(any_db)
    bid = accepted(any_db, fam)
    actor = {"kind": "person", "id_number": fam.grantor}
    wrong_actor = client.post(f"/api/v1/bindings/{bid}/unbind", headers=auth,
                              json={"actor": {"kind": "person", "id": f"psn_{RLO}x"}})
    assert wrong_actor.status_code == 422 and wrong_actor.get_json()["errors"][0]["loc"] == "actor.id"
    nul_reason = client.post(f"/api/v1/bindings/{bid}/unbind", headers=auth,
                             json={"actor": actor, "reason": "不再需要\x00"})
    assert nul_reason.status_code == 422 and nul_reason.get_json()["errors"][0]["loc"] == "reason"
    lines = client.post(f"/api/v1/bindings/{bid}/unbind", headers=auth,
                        json={"actor": actor, "reason": "不再需要\n家属已参保"})
    assert lines.status_code == 200 and lines.get_json()["state"] == "unbound"


def test_a_path_value_is_404_and_a_query_value_422(any_db, crypto_keys):
    """Given either backend, When a binding id in the path holds a NUL or a direction mark, Then 404 as an id
    nobody holds; When the feed's cursor holds one, Then 422 naming the parameter; a limit int() would read
    (" 5", "1_0", a full-width digit) is 422 too."""
    client, auth = _client(any_db, crypto_keys)
    for path in ("/api/v1/bindings/bnd_%00x", "/api/v1/bindings/bnd_%E2%80%AEx/history"):
        answer = client.get(path, headers=auth)
        assert answer.status_code == 404 and answer.get_json()["code"] == "not_found"
    cursor = client.get("/api/v1/sync/bindings?after=c1%00", headers=auth)
    assert cursor.status_code == 422 and "after" in cursor.get_json()["detail"]
    for limit in ("%205", "1_0", "%EF%BC%95"):
        answer = client.get(f"/api/v1/sync/bindings?limit={limit}", headers=auth)
        assert answer.status_code == 422 and answer.get_json()["code"] == "validation_failed", limit
    assert client.get("/api/v1/sync/bindings?limit=5", headers=auth).status_code == 200


def test_a_body_over_the_limit_is_413_too_large(sqlite_db, crypto_keys):
    """Given the 1 MiB limit, When a platform posts 2 MiB, Then 413 with its own code `too_large` (not
    `malformed`, whose status is 400), as the document of every operation with a body lists."""
    client, auth = _client(sqlite_db, crypto_keys)
    answer = client.post("/api/v1/persons/lookup", data=b"{" + b" " * (2 << 20) + b"}", headers=auth,
                         content_type="application/json")
    assert answer.status_code == 413 and answer.get_json()["code"] == "too_large"
    assert client.get("/api/v1/problems/too_large").get_json()["status"] == 413


def _webhook(db, platform_id: str, kind: str, data: dict) -> int:
    wid = f"msg_{uuid.uuid4().hex}"
    body = json.dumps({"type": kind, "data": data}, ensure_ascii=False).encode()
    rid, _ = webhooks.receive(db, platform=platforms.get(db, platform_id), webhook_id=wid, body=body,
                              headers={"webhook-id": wid, "webhook-timestamp": str(int(utcnow().timestamp()))},
                              event_type=kind)
    return rid


def test_a_webhook_with_such_a_text_is_refused_at_its_first_run_on_both_backends(any_db, family):
    """Given either backend, When a person.updated names a person `\\x00张三`, or a binding.unbind_requested
    carries a binding id with a NUL or an actor id with a direction mark, Then the first run ends it as
    `validation_failed` (final: it would fail the same every time), naming where, and nothing changes."""
    fam = family(any_db)
    bid = accepted(any_db, fam)
    cases = [("person.updated", _person(with_check_digit("32010219800101125"), "\x00张三"), "data.name"),
             ("binding.unbind_requested", {"binding_id": "bnd_\x00x", "actor": {"kind": "person", "id": "psn_x"}},
              "data.binding_id"),
             ("binding.unbind_requested", {"binding_id": bid,
                                           "actor": {"kind": "person", "id_number": f"{fam.grantor}{RLO}"}},
              "data.actor.id_number")]
    before = _persons(any_db)
    for kind, data, where in cases:
        rid = _webhook(any_db, "jiangsu", kind, data)
        assert webhooks.process(any_db, rid) == "validation_failed"
        with any_db() as s:
            row = s.get(ReceivedWebhook, rid)
            assert (row.attempts, row.processed_at is not None) == (1, True)
            assert where in (row.last_error or "")
    assert _persons(any_db) == before
    with any_db() as s:
        assert s.execute(sa.text("select state from bindings where id = :b"), {"b": bid}).scalar() == "accepted"


def test_a_face_providers_reason_loses_such_characters_and_its_result_counts(any_db, family):
    """Given a face check under way, When the provider's passed result carries a reason with a NUL and a
    direction mark, Then the result is applied (a refusal would lose a passed check) and the reason is
    kept without those characters."""
    from workflows import verification

    fam = family(any_db)
    bid = invite(any_db, fam, now=utcnow())["id"]
    started = verification.start_verification(any_db, bid, {"kind": "person", "id_number": fam.beneficiary})
    rid = _webhook(any_db, "facecheck", "verification.completed", {
        "verification_id": started["verification_id"], "binding_id": bid, "result": "passed",
        "reason": f"活体\x00通过{RLO}"})
    assert webhooks.process(any_db, rid) == "passed"
    with any_db() as s:
        reasons = s.execute(sa.text("select reason from verification_attempts where binding_id = :b"),
                            {"b": bid}).scalars().all()
    assert reasons == ["活体通过"]


def test_an_unknown_field_named_like_an_id_number_is_refused_without_echoing_its_name(sqlite_db, crypto_keys):
    """Given a body with an unknown field whose name is an ID number (a platform's mapping gone wrong), When
    it is posted, Then 422 validation_failed for an extra field, named `…`: the answer never carries a value
    from the request, and a field's name is one."""
    client, auth = _client(sqlite_db, crypto_keys)
    number = with_check_digit("32010219800101126")
    answer = client.post("/api/v1/persons/lookup", json={"id_number": number, number: True}, headers=auth)
    assert answer.status_code == 422 and [e["loc"] for e in answer.get_json()["errors"]] == ["…"]
    assert number not in answer.get_data(as_text=True)
