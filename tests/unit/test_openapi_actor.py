"""The OpenAPI document says what the API enforces about an actor: exactly one of `id_number` and `id`, so
a client generated from it, or a validator, refuses both or neither before a request is sent."""
from __future__ import annotations

import jsonschema
import pytest

from web.api.openapi import document


@pytest.mark.parametrize("actor, valid", [
    ({"kind": "person", "id_number": "320102198001011238"}, True),
    ({"kind": "person", "id": "psn_1"}, True),
    ({"kind": "person", "id": "psn_1", "id_number": None}, True),
    ({"kind": "person"}, False),
    ({"kind": "person", "id": None, "id_number": None}, False),
    ({"kind": "person", "id": "psn_1", "id_number": "320102198001011238"}, False),
])
def test_the_documented_actor_is_exactly_one_of_id_number_and_id(actor, valid):
    """Given the document's ActorIn schema, When an actor is validated against it, Then it is accepted exactly
    when it names the person one way (as the API's own validation decides)."""
    doc = document()
    schema = {**doc["components"]["schemas"]["ActorIn"], "components": doc["components"]}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(actor))
    assert (not errors) is valid, errors
