"""Personal data at rest on PostgreSQL: no table holds a plaintext ID number or name; outbox payloads carry
masked forms only.

The search reads every text-like column (text, varchar, char, json, jsonb) of every table straight from
SQL, cast to text, so it sees what a database dump or a DBA would see. Names are searched both as written
and JSON-escaped (`\\u5f20...`, how the JSON columns store non-ASCII text)."""
from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from models import OutboxMessage
from workflows import commands, persons, timers, verification, webhooks
from workflows.actors import Actor
from workflows.idnumbers import mask, mask_name, with_check_digit
from workflows.platforms import PlatformInfo

from .support import T0, TTL, accepted, face_verified, invite, person

pytestmark = pytest.mark.pg

JIANGSU = PlatformInfo(id="jiangsu", kind="province", provinces=("32",), webhook_secret="", webhook_url=None)
CANARY = "canary-reason-7f3a"  # an operator's reason: a plaintext value the dump must find (a control)
# 18 characters shaped like an ID number, not part of a longer token (hex digests are all-alphanumeric)
ID_LIKE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def _text_columns(session) -> list[tuple[str, str]]:
    return session.execute(sa.text(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name <> 'alembic_version' "
        "AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb') "
        "ORDER BY table_name, ordinal_position")).all()


def _dump(db) -> dict[tuple[str, str], list[str]]:
    """{(table, column): [every non-null value as text]} for every text-like column of every table."""
    out = {}
    with db() as s:
        for table, column in _text_columns(s):
            out[(table, column)] = list(s.scalars(sa.text(
                f'SELECT "{column}"::text FROM "{table}" WHERE "{column}" IS NOT NULL')))
    return out


def _forms_of_name(name: str) -> set[str]:
    return {name, json.dumps(name)[1:-1], json.dumps(name, ensure_ascii=False)[1:-1]}


def _forms_of_number(number: str) -> set[str]:
    return {number, number.lower(), number[:17]}  # also without the check digit


def _populate(db, family) -> list[tuple[str, str]]:
    """Persons and bindings in many states, a stored inbound webhook; returns [(ID number, name)]."""
    people = []

    def remember(fam):
        people.extend([(fam.grantor, fam.grantor_name), (fam.beneficiary, fam.beneficiary_name)])
        return fam

    # the main line to unbound, with an operator's reason (the canary)
    fam = remember(family(db, now=T0))
    bid = accepted(db, fam)
    commands.authorize(db, bid, person(fam.grantor), 12_345, now=T0 + timedelta(hours=1))
    commands.unbind(db, bid, Actor("operator", "alice"), reason=CANARY, now=T0 + timedelta(hours=2))
    # authorized for the whole balance
    fam = remember(family(db, now=T0))
    bid = accepted(db, fam)
    commands.authorize(db, bid, person(fam.grantor), None, now=T0 + timedelta(hours=1))
    # the guardian path
    kid = remember(family(db, beneficiary_born=date(2016, 5, 5), now=T0))
    assert invite(db, kid, relationship="child")["state"] == "accepted"
    # declined after face verification, the person's reason naming both of them, with ID and mobile numbers
    fam = remember(family(db, now=T0))
    said = f"{fam.beneficiary_name}不想要了，{fam.grantor_name}（身份证{fam.grantor}）电话13812345678"
    commands.decline(db, face_verified(db, fam), person(fam.beneficiary), reason=said, now=T0 + timedelta(minutes=5))
    # an invitation that expires; a failed verification (the verifier's reason naming the person)
    fam = remember(family(db, now=T0))
    invite(db, fam)
    timers.sweep_all(db, now=T0 + TTL)
    fam = remember(family(db, now=T0 + TTL))
    bid = invite(db, fam, now=T0 + TTL)["id"]
    vid = verification.start_verification(db, bid, person(fam.beneficiary), now=T0 + TTL)["verification_id"]
    verification.record_verification_result(db, verification_id=vid, binding_id=bid, result="failed",
                                            verifier_id="facecheck", reason=f"face_mismatch {fam.beneficiary_name}"
                                            f" {fam.beneficiary.lower()}", now=T0 + TTL)
    # a person written by a provincial platform, then renamed by it
    provincial = with_check_digit("32050219700707555")
    for name, at in (("欧阳修远", T0), ("欧阳修文", T0 + timedelta(days=1))):
        persons.upsert(db, dict(id_number=provincial, name=name, insurance_type="employee",
                                insurance_status="active", region_code="320500", real_name_verified=True),
                       platform=JIANGSU, now=at)
    people.extend([(provincial, "欧阳修远"), (provincial, "欧阳修文")])
    # an inbound webhook whose body names a person, stored and then processed
    body = json.dumps({"type": "person.updated", "data": {"id_number": fam.beneficiary,
                                                          "name": fam.beneficiary_name}}, ensure_ascii=False)
    received, _ = webhooks.receive(db, platform=JIANGSU, webhook_id="msg_privacy_1", body=body.encode(),
                                   headers={"webhook-id": "msg_privacy_1"}, event_type="person.updated")
    webhooks.process(db, received)
    return people


def test_no_table_holds_a_plaintext_id_number_or_name(pg_db, family):
    """Given persons (from the registry and from a provincial platform, one renamed), bindings in every
    kind of state (a person's and a verifier's reasons naming persons, their ID and mobile numbers) and a
    stored inbound webhook carrying an ID number and a name,
    when every text and JSON column of every table is read with SQL,
    then no value contains any of the ID numbers (also lower-case x, also without the check digit) or any
    of the names (also JSON-escaped); the masked forms and a plaintext control value are found, so the
    search is not blind."""
    people = _populate(pg_db, family)
    dump = _dump(pg_db)
    assert ("persons", "id_number") in dump and ("outbox", "payload") in dump and ("received_webhooks", "body") in dump

    leaks = []
    for (table, column), values in dump.items():
        for value in values:
            for number, name in people:
                for needle in _forms_of_number(number) | _forms_of_name(name):
                    if needle in value:
                        leaks.append(f"{table}.{column} contains {mask(number)}/{mask_name(name)} as {needle!r}")
            if ID_LIKE.search(value):
                leaks.append(f"{table}.{column} contains something shaped like an ID number")
    assert leaks == []

    everything = "\n".join(v for values in dump.values() for v in values)
    assert CANARY in everything
    assert "138****5678" in everything and "13812345678" not in everything  # a mobile number is masked too
    for number, name in people:
        assert mask(number) in everything
        assert json.dumps(mask_name(name))[1:-1] in everything or mask_name(name) in everything
    # and the data is still there, encrypted: the look-up by number decrypts to the masked view
    grantor_number, _ = people[0]
    assert persons.lookup(pg_db, grantor_number)["id_number_masked"] == mask(grantor_number)


def _walk(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def test_outbox_payloads_carry_only_masked_person_data(pg_db, family):
    """Given the same population of persons and bindings,
    when every outbox payload is inspected,
    then no key names a plaintext ID number or name, every person reference carries exactly the masked
    forms of that person, and no value is shaped like an ID number."""
    people = dict(_populate(pg_db, family))
    masked = {mask(n): mask_name(name) for n, name in people.items()}
    with pg_db() as s:
        payloads = s.scalars(sa.select(OutboxMessage.payload).order_by(OutboxMessage.id)).all()
    assert len(payloads) > 20

    refs = 0
    for payload in payloads:
        for path, value in _walk(payload):
            key = path.rsplit(".", 1)[-1]
            assert key not in {"id_number", "name", "grantor_id_number", "beneficiary_id_number",
                               "beneficiary_name"}, f"{payload['type']}: {path} is plaintext person data"
            assert not (isinstance(value, str) and ID_LIKE.search(value)), f"{payload['type']}: {path}"
        b = payload["data"].get("binding")
        for side in ("grantor", "beneficiary") if b else ():
            ref = b[side]
            assert set(ref) == {"id", "id_number_masked", "name_masked", "region_code"}
            assert ref["id"].startswith("psn_")
            assert ref["id_number_masked"] in masked and "*" in ref["id_number_masked"]
            assert "*" in ref["name_masked"]
            refs += 1
    assert refs > 20
