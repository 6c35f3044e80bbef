"""Retiring a PII key (`workflows/rekey.py`, `gongji pii rekey`): every encrypted column's values sealed with an
older key are re-encrypted under the active one, after which the old key can leave GONGJI_PII_KEYS and
everything still reads. On PostgreSQL and on the embedded default's SQLite."""
from __future__ import annotations

import base64
import json

import pytest
import sqlalchemy as sa

from models import Person, Platform, ReceivedWebhook, crypto
from models.types import utcnow
from workflows import platforms, rekey

NEW_KEY = base64.b64encode(b"\x07" * 32).decode()


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request, crypto_keys):
    db = request.getfixturevalue("pg_db" if request.param == "postgresql" else "sqlite_db")
    yield db
    crypto.configure(crypto_keys["pii_keys"], crypto_keys["active"], crypto_keys["lookup_key"])  # as before
    platforms.clear_cache()


def _everything(db) -> tuple:
    """Every encrypted value, decrypted: the persons' numbers and names (and when they last changed: re-sealing
    changes no fact), the platforms' secrets, the bodies."""
    with db() as s:
        return (sorted((p.id_number, p.name, p.updated_at) for p in s.scalars(sa.select(Person))),
                sorted((p.id, p.webhook_secret, p.previous_webhook_secret) for p in s.scalars(sa.select(Platform))),
                sorted(w.body for w in s.scalars(sa.select(ReceivedWebhook))))


def test_rekey_moves_every_value_to_the_active_key_and_the_old_key_can_go(db, crypto_keys, family):
    """Given persons, platforms (one mid-rotation) and a received webhook, all sealed with the old key
    When a new key is put first, `rekey` runs (twice: the second finds nothing), and the old key is dropped
    Then every encrypted column holds only the new key's id, the second run rewrites nothing, and with the
    new key alone every value reads as before."""
    old = crypto_keys["active"]
    family(db)
    platforms.rotate_secret(db, "jiangsu", "whsec_" + base64.b64encode(b"r" * 32).decode(), overlap_s=3600)
    with db.begin() as s:
        s.add(ReceivedWebhook(platform_id="national", webhook_id="msg_rekey", type="person.updated",
                              body=json.dumps({"data": {"name": "张三"}}), headers={}, received_at=utcnow(),
                              attempts=0))
    before = _everything(db)
    assert all(set(by_key) <= {old} for by_key in rekey.key_ids(db).values())

    crypto.configure({"k9": NEW_KEY, **crypto_keys["pii_keys"]}, "k9", crypto_keys["lookup_key"])
    done = rekey.rekey(db, batch=2)  # several batches a column

    assert done["persons.id_number"] >= 2 and done["received_webhooks.body"] == 1
    assert done["platforms.previous_webhook_secret"] == 1
    assert all(set(by_key) <= {"k9"} for by_key in rekey.key_ids(db).values()), rekey.key_ids(db)
    assert set(rekey.rekey(db).values()) == {0}
    crypto.configure({"k9": NEW_KEY}, "k9", crypto_keys["lookup_key"])  # the old key gone
    assert _everything(db) == before


def test_the_personal_data_columns_are_among_those_walked():
    """The pass walks every `Encrypted` column of the models, these among them (a new one is covered by itself)."""
    assert {"persons.id_number", "persons.name", "platforms.webhook_secret", "platforms.previous_webhook_secret",
            "received_webhooks.body"} <= {f"{t.name}.{c.name}" for t, c in rekey.encrypted_columns()}
