"""What each kind of platform may do through the API. A face-verification provider (`verifier`) sends its
results to `/webhooks/<platform>` and reads what became of them (`GET /api/v1/webhooks/{id}`); it keeps no
insurance registry, so it may not register persons, look them up, invite, authorize or read the feed, even
when it was registered for a province (`--regions 32`: whose faces it checks). Flask's test client on the
embedded default's SQLite file."""
from __future__ import annotations

import pytest

from models.settings import Settings
from web.app import create_app
from workflows import platforms, sync
from workflows.platforms import PlatformInfo

from .support import invite

KEY = "gk_test_jsface"


@pytest.fixture
def client(sqlite_db, crypto_keys):
    settings = Settings(database_url="sqlite://", redis_url=None, pii_keys=crypto_keys["pii_keys"],
                        pii_active_key=crypto_keys["active"], lookup_key=crypto_keys["lookup_key"],
                        secret_key="test-secret", dev_mode=True)
    platforms.add(sqlite_db, "jsface", kind="verifier", api_key=KEY, webhook_secret="whsec_" + "C" * 44,
                  webhook_url="http://127.0.0.1:9/sessions", provinces=["32"])
    platforms.clear_cache()
    return create_app(settings, db=sqlite_db, engine=None).test_client()


def _calls(fam, bid: str) -> list[tuple[str, str, dict | None]]:
    grantor = {"kind": "person", "id_number": fam.grantor}
    return [
        ("POST", "/api/v1/persons", {"id_number": fam.grantor, "name": fam.grantor_name,
                                     "insurance_type": "employee", "insurance_status": "ended",
                                     "region_code": "320100", "real_name_verified": True}),
        ("POST", "/api/v1/persons/lookup", {"id_number": fam.grantor}),
        ("POST", "/api/v1/bindings", {"grantor_id_number": fam.grantor, "beneficiary_id_number": fam.beneficiary,
                                      "beneficiary_name": fam.beneficiary_name, "relationship": "spouse",
                                      "commitment_version": "JS-2024-01", "channel": "app"}),
        ("GET", f"/api/v1/bindings/{bid}", None),
        ("GET", f"/api/v1/bindings/{bid}/history", None),
        ("POST", f"/api/v1/bindings/{bid}/cancel", {"actor": grantor}),
        ("GET", "/api/v1/sync/bindings", None),
        ("GET", "/api/v1/sync/status", None),
        ("GET", "/api/v1/regions/320100", None),
    ]


def test_a_face_verification_provider_may_not_act_for_persons(client, sqlite_db, family):
    """Given a face-verification provider registered for Jiangsu, and a Jiangsu family with an invitation
    When the provider calls each registry endpoint with its key (register, look up, invite, read, cancel,
    the feed, the region's policy)
    Then each is 403 platform_not_allowed, and the binding and the grantor are as they were."""
    fam = family(sqlite_db)
    bid = invite(sqlite_db, fam)["id"]
    auth = {"Authorization": f"Bearer {KEY}"}

    answers = {(m, p): client.open(p, method=m, json=body, headers=auth) for m, p, body in _calls(fam, bid)}

    assert {k: (a.status_code, a.get_json()["code"]) for k, a in answers.items()} == {
        k: (403, "platform_not_allowed") for k in answers}
    jiangsu = {"Authorization": "Bearer gk_dev_jiangsu"}
    seen = client.get(f"/api/v1/bindings/{bid}", headers=jiangsu).get_json()
    assert (seen["state"], seen["version"]) == ("invited", 1)
    grantor = client.post("/api/v1/persons/lookup", json={"id_number": fam.grantor}, headers=jiangsu).get_json()
    assert grantor["insurance_status"] == "active"


def test_a_face_verification_provider_reads_what_became_of_its_webhooks(client):
    """Given the provider, When it asks for a webhook it never sent, Then 404 not_found (not 403): the one
    API endpoint it may call. And the OpenAPI document lists 403 for the endpoints it may not."""
    answer = client.get("/api/v1/webhooks/msg_never_sent", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 404 and answer.get_json()["code"] == "not_found"
    doc = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert "platform_not_allowed" in doc["/api/v1/persons"]["post"]["responses"]["403"]["description"]
    assert "403" not in doc["/api/v1/webhooks/{webhook_id}"]["get"]["responses"]


def test_only_registries_serve_a_province():
    """A verifier's provinces say whose faces it checks: it serves no insured person's province."""
    def info(kind, provinces):
        return PlatformInfo(id=kind, kind=kind, provinces=provinces, webhook_secret="", webhook_url=None)
    assert [info(k, ("32",)).serves("32") for k in ("national", "province", "verifier")] == [True, True, False]
    assert info("national", ()).serves("65") and not info("province", ("32",)).serves("65")
    assert str(sync.concerns(info("verifier", ("32",)))) == "false"
