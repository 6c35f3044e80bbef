"""The sync API over real HTTP: the pull feed and the calling platform's lag."""
from __future__ import annotations

import requests

from .support import assert_problem, poll


def test_a_platform_pages_the_feed_and_reads_its_lag(embedded, js, xj):
    """Given a Jiangsu binding
    When Jiangsu pages through GET /api/v1/sync/bindings from the start (a change shows once every write
    begun before it has committed: at once here, polled so that a worker's write in flight cannot fail it)
    Then the binding appears, masked, with a cursor to continue from; Xinjiang's feed does not show it;
    a made-up cursor or a limit outside 1..1000 is 422 validation_failed; no key is 401; GET /sync/status answers Jiangsu's own lag."""
    grantor, beneficiary = js.person("320100"), js.person("320100", insurance_type="resident")
    bid = js.invited(grantor, beneficiary)["id"]

    def jiangsu_sees_it():
        feed, page = None, {"has_more": True, "next": None}
        ids = []
        while page["has_more"]:
            resp = js.get("/api/v1/sync/bindings" + (f"?after={page['next']}" if page["next"] else ""))
            assert resp.status_code == 200, resp.text
            page = resp.json()
            ids += [b["id"] for b in page["bindings"]]
            feed = page
        return (bid in ids) and feed
    last = poll(jiangsu_sees_it, timeout=30, what="the binding in Jiangsu's feed")
    assert last["next"]
    assert grantor.id_number not in js.get("/api/v1/sync/bindings").text

    xj_ids = [b["id"] for b in xj.get("/api/v1/sync/bindings?limit=1000").json()["bindings"]]
    assert bid not in xj_ids
    assert_problem(js.get("/api/v1/sync/bindings?after=made-up"), 422, "validation_failed")
    for limit in ("0", "-1", "1001", "ten"):  # the document's 1..1000, not a silent clamp
        assert_problem(js.get(f"/api/v1/sync/bindings?limit={limit}"), 422, "validation_failed")
    assert_problem(requests.get(f"{embedded}/api/v1/sync/bindings", timeout=30), 401, "unauthorized")
    status = js.get("/api/v1/sync/status")
    assert status.status_code == 200 and status.json()["platform"] == "jiangsu"
    assert set(status.json()) == {"platform", "behind", "failing", "dead", "oldest_age_s", "oldest_open_age_s"}
