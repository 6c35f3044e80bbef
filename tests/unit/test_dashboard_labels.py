"""Every event type an operator meets on the dashboard (deliveries, inbound webhooks) has words: a type
added later without a label would show as a bare code in the Chinese dashboard."""
from __future__ import annotations

from web.dashboard import labels
from workflows import machine, webhooks
from workflows.unit import event_type


def _outbound() -> set[str]:
    sent = {event_type(t["trigger"], t["dest"]) for t in machine.TRANSITIONS}
    return sent | {"settlement.completed", "settlement.reversed"}


def test_every_event_type_has_a_label():
    """Given every outbound type a transition or a settlement sends and every inbound webhook type, When
    each is looked up, Then it has its own label (not the code)."""
    for code in _outbound() | set(webhooks.TYPES):
        assert code in labels.TOPICS, code
        assert labels.topic(code) != code


def test_an_unknown_type_shows_as_its_code():
    """Given a type the dashboard has no words for (an internal one), When shown, Then its code, as sent."""
    assert labels.topic("webhook.received") == "webhook.received" and labels.topic(None) == ""
