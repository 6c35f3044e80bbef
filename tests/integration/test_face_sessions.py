"""Face-verification sessions on real PostgreSQL against the simulator's fake provider over real HTTP:
the request carries the identity only to the provider, answers and errors are recorded on the attempt,
an attempt no longer pending is not sent, and the provider calls back signed with its secret."""
from __future__ import annotations

from datetime import timedelta

import pytest

from models import seed
from web.api.schemas import VerificationOut
from workers import outbound
from workers.simulator.face import FakeFaceProvider
from workers.simulator.platform import FakePlatform
from workflows import face_sessions, platforms, queries, verification

from .support import T0, invite, person, wait_until


@pytest.fixture
def provider(pg_db):
    with pg_db.begin() as s:
        secret = seed.seed_dev_platforms(s)["facecheck"][1]
    sink = FakePlatform([secret]).start()  # stands in for Gongji's /webhooks/facecheck
    fake = FakeFaceProvider([secret], latency_s=0.0, seed=7).start()
    platforms.set_webhook_url(pg_db, "facecheck", fake.url)
    yield fake, sink
    fake.stop()
    sink.stop()


def _attempt(db, fam):
    bid = invite(db, fam)["id"]
    return bid, verification.start_verification(db, bid, person(fam.beneficiary), now=T0)["verification_id"]


def _send(db, request):
    return outbound.post_signed(request.url, request.secrets, request.event_id, request.payload)


def test_a_session_is_opened_and_the_provider_calls_back_signed(pg_db, family, provider):
    fake, sink = provider
    # Given a pending attempt
    fam = family(pg_db)
    bid, vid = _attempt(pg_db, fam)
    # When a worker asks the provider
    request = face_sessions.session_request(pg_db, vid, callback_base=sink.url.rsplit("/webhooks", 1)[0])
    answer = _send(pg_db, request)
    assert answer.ok
    face_sessions.session_opened(pg_db, vid, "sess_" + vid)
    # Then the identity went to the provider only in the request, and the attempt shows the session
    assert request.payload["data"]["subject"]["id_number"] == fam.beneficiary
    assert fam.beneficiary not in str(fake.events[0].payload)  # the fake keeps no identity
    seen = queries.binding(pg_db, bid)["verifications"][0]
    assert (seen["provider_status"], seen["provider_requests"], seen["provider_session_id"]) == \
        ("opened", 1, "sess_" + vid)
    assert fam.beneficiary not in str(seen)
    # And the provider's callback, signed with the verifier's secret, reached the callback URL
    wait_until(lambda: sink.events)
    assert sink.events[0].type == "verification.completed"
    assert sink.events[0].payload["data"] == {"verification_id": vid, "binding_id": bid, "result": "passed"}


def test_a_provider_error_is_recorded_and_retried_until_it_opens(pg_db, family, provider):
    fake, sink = provider
    fam = family(pg_db)
    bid, vid = _attempt(pg_db, fam)
    # Given the provider answering 503
    fake.set_mode("fail", status=503)
    request = face_sessions.session_request(pg_db, vid, callback_base="http://127.0.0.1:9")
    answer = _send(pg_db, request)
    # Then the error is on the attempt and the worker is told to retry
    assert face_sessions.session_failed(pg_db, vid, answer.error) is True
    seen = queries.binding(pg_db, bid)["verifications"][0]
    assert seen["provider_status"] == "error" and "503" in seen["provider_error"]
    # When the provider recovers, the retry opens it
    fake.set_mode("ok")
    retry = face_sessions.session_request(pg_db, vid, callback_base="http://127.0.0.1:9")
    assert retry.event_id == request.event_id  # the same message again: a provider that has it drops it
    assert _send(pg_db, retry).ok
    face_sessions.session_opened(pg_db, vid, None)
    seen = queries.binding(pg_db, bid)["verifications"][0]
    assert (seen["provider_status"], seen["provider_requests"], seen["provider_error"]) == ("opened", 2, None)
    # And an opened session is not requested again (redelivery of the same message)
    assert face_sessions.session_request(pg_db, vid, callback_base="http://127.0.0.1:9") is None


def test_nothing_is_sent_for_an_attempt_no_longer_pending(pg_db, family, provider):
    fam = family(pg_db)
    bid, vid = _attempt(pg_db, fam)
    verification.record_verification_result(pg_db, verification_id=vid, binding_id=bid, result="failed",
                                            verifier_id="facecheck", now=T0 + timedelta(seconds=5))
    assert face_sessions.session_request(pg_db, vid, callback_base="http://x") is None
    assert face_sessions.session_failed(pg_db, vid, "late error") is False  # no retry for a closed attempt


def test_without_a_registered_provider_the_attempt_says_so(pg_db, family):
    platforms.set_webhook_url(pg_db, "facecheck", None)
    fam = family(pg_db)
    bid, vid = _attempt(pg_db, fam)
    assert face_sessions.session_request(pg_db, vid, callback_base="http://x") is None
    seen = queries.binding(pg_db, bid)["verifications"][0]
    assert seen["provider_status"] == "error" and "no face-verification provider" in seen["provider_error"]


def test_the_provider_serving_the_beneficiarys_province_is_asked_and_only_its_result_counts(pg_db, family, provider):
    """Given the nationwide provider and one registered for Xinjiang only, a Jiangsu beneficiary's attempt
    goes to the nationwide one (the Xinjiang provider never sees a Jiangsu identity); once a provider for
    Jiangsu is registered, the next attempt goes to it. A result sent by another verifier than the one asked
    is refused (403 not_your_binding) and changes nothing; the one asked completes it."""
    from workflows.errors import DomainError
    fake, sink = provider
    platforms.add(pg_db, "xjface", kind="verifier", api_key="gk_xjface_test", webhook_secret="whsec_" + "B" * 44,
                  webhook_url="http://127.0.0.1:9/xj", provinces=["65"])
    platforms.clear_cache()
    fam = family(pg_db)
    bid, vid = _attempt(pg_db, fam)

    assert face_sessions.session_request(pg_db, vid, callback_base="http://gongji.test").verifier_id == "facecheck"
    with pytest.raises(DomainError) as refused:
        verification.record_verification_result(pg_db, verification_id=vid, binding_id=bid, result="passed",
                                                verifier_id="xjface", now=T0)
    assert refused.value.code == "not_your_binding"
    assert queries.binding(pg_db, bid)["state"] == "invited"
    assert verification.record_verification_result(pg_db, verification_id=vid, binding_id=bid, result="failed",
                                                   verifier_id="facecheck", now=T0) == "failed"

    platforms.add(pg_db, "jsface", kind="verifier", api_key="gk_jsface_test", webhook_secret="whsec_" + "C" * 44,
                  webhook_url="http://127.0.0.1:9/js", provinces=["32"])
    platforms.clear_cache()
    second = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)["verification_id"]
    assert face_sessions.session_request(pg_db, second, callback_base="http://gongji.test").verifier_id == "jsface"


def test_before_any_provider_is_asked_only_the_provider_for_the_beneficiarys_province_may_answer(pg_db, family):
    """Given a Jiangsu beneficiary's open attempt that no provider was asked about yet (its worker has not run,
    or no provider with a URL serves Jiangsu), the nationwide provider without a URL, and a provider registered
    for Xinjiang only
    When the Xinjiang provider sends a result for it (it learnt the ids somehow)
    Then it is refused (403 not_your_binding) and changes nothing; the nationwide provider, the one the
    registry names for Jiangsu, may still answer."""
    from workflows.errors import DomainError
    platforms.add(pg_db, "xjface", kind="verifier", api_key="gk_xjface_test", webhook_secret="whsec_" + "B" * 44,
                  webhook_url="http://127.0.0.1:9/xj", provinces=["65"])
    platforms.clear_cache()
    fam = family(pg_db)
    bid, vid = _attempt(pg_db, fam)
    assert face_sessions.session_request(pg_db, vid, callback_base="http://gongji.test") is None  # nobody to ask

    with pytest.raises(DomainError) as refused:
        verification.record_verification_result(pg_db, verification_id=vid, binding_id=bid, result="passed",
                                                verifier_id="xjface", now=T0)
    assert refused.value.code == "not_your_binding"
    assert queries.binding(pg_db, bid)["state"] == "invited"
    assert verification.record_verification_result(pg_db, verification_id=vid, binding_id=bid, result="passed",
                                                   verifier_id="facecheck", now=T0) == "passed"


def test_an_attempt_whose_provider_was_never_asked_is_asked_once_more(pg_db, family, provider):
    """Given an open attempt whose worker message to ask the provider was lost,
    when the scheduler looks UNASKED_S after the attempt opened,
    then it is marked queued and returned once (the next look finds nothing), its second ask is sent,
    and a second ask that arrives after someone else asked sends nothing."""
    fam = family(pg_db)
    bid, vid = _attempt(pg_db, fam)
    assert face_sessions.unasked(pg_db, now=T0 + timedelta(seconds=face_sessions.UNASKED_S - 1)) == []
    later = T0 + timedelta(seconds=face_sessions.UNASKED_S + 1)

    assert face_sessions.unasked(pg_db, now=later) == [vid]
    assert face_sessions.unasked(pg_db, now=later) == []
    queued = queries.binding(pg_db, bid)["verifications"][0]
    assert queued["provider_status"] == "queued"
    VerificationOut.model_validate(queued)  # an answer the published OpenAPI document allows
    request = face_sessions.session_request(pg_db, vid, callback_base="http://gongji.test", only_if_queued=True)
    assert request is not None and request.verifier_id == "facecheck"
    assert face_sessions.session_request(pg_db, vid, callback_base="http://gongji.test", only_if_queued=True) is None
