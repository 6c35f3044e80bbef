"""The OpenAPI description of the webhooks, both ways (Standard Webhooks): `/webhooks/{platform}` with the
`data` of each inbound type (API.md "Inbound webhooks"), and the OpenAPI 3.1 `webhooks` section naming every
outbound event Gongji sends to a platform's URL (API.md "Outbound events") with its body."""
from __future__ import annotations

from workflows.unit import EVENT_TYPES

REF = "#/components/schemas/{}"
SIGNED = ("Standard Webhooks: headers webhook-id, webhook-timestamp (unix seconds) and webhook-signature "
          "(`v1,<base64 HMAC-SHA256 of id.timestamp.body>` with the platform's whsec_ secret; several during a "
          "secret rotation)")
_STR = {"type": "string"}
# the answer to a webhook: its webhook-id (follow it with GET /api/v1/webhooks/{id}) and whether it was a copy
RECEIPT = {"type": "object", "required": ["received", "duplicate"], "properties": {
    "received": {"type": "string", "description": "the webhook-id, as GET /api/v1/webhooks/{id} takes it"},
    "duplicate": {"type": "boolean", "description": "true: a webhook-id already stored; nothing changed"}}}
_ID_NUMBER = {"type": "string", "description": "18-character resident ID number"}
_AS_OF = {"type": "string", "format": "date-time",
          "description": "the registry's as-of time (with an offset); without it, the webhook-timestamp"}
INBOUND = {
    "verification.completed": {"type": "object", "required": ["verification_id", "binding_id", "result"],
                               "properties": {"verification_id": _STR, "binding_id": _STR,
                                              "result": {"enum": ["passed", "failed"]}, "reason": _STR}},
    "person.updated": {"allOf": [{"$ref": REF.format("PersonIn")}],
                       "description": "the fields of POST /api/v1/persons"},
    "person.deceased": {"type": "object", "required": ["id_number"],
                        "properties": {"id_number": _ID_NUMBER, "updated_at": _AS_OF}},
    "relationship.ended": {"type": "object", "required": ["grantor_id_number", "beneficiary_id_number"],
                           "properties": {"grantor_id_number": _ID_NUMBER, "beneficiary_id_number": _ID_NUMBER}},
    "binding.unbind_requested": {"type": "object", "required": ["binding_id", "actor"],
                                 "properties": {"binding_id": _STR, "actor": {"$ref": REF.format("ActorIn")},
                                                "reason": _STR}},
}
# every outbound binding event: one per transition (workflows/unit.py), plus a failed attempt with attempts left
OUTBOUND = sorted({*EVENT_TYPES.values(), "binding.verification_failed", "binding.verification_attempt_failed"})


def _headers() -> list[dict]:
    return [{"name": h, "in": "header", "required": True, "schema": _STR}
            for h in ("webhook-id", "webhook-timestamp", "webhook-signature")]


def WEBHOOK_PATHS(problem_ref: dict) -> dict:
    body = {"oneOf": [{"type": "object", "required": ["type", "data"], "additionalProperties": False,
                       "properties": {"type": {"const": kind}, "data": data}} for kind, data in INBOUND.items()],
            "discriminator": {"propertyName": "type"}}
    err = {"content": {"application/problem+json": {"schema": problem_ref}}}
    return {"/webhooks/{platform}": {"post": {
        "summary": "Inbound webhook from a platform or the face-verification provider",
        "description": SIGNED + ", ±5 min tolerance. Stored before it is answered (202), deduplicated on "
                       "webhook-id (a duplicate answers 200 and changes nothing), processed by a worker; "
                       "its outcome (applied, stale, a refusal code) is recorded, not answered.",
        "tags": ["webhooks"],
        "parameters": [{"name": "platform", "in": "path", "required": True, "schema": _STR}, *_headers()],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {"202": {"description": "stored", "content": {"application/json": {"schema": RECEIPT}}},
                      "200": {"description": "duplicate, ignored", "content": {"application/json": {"schema": RECEIPT}}},
                      "400": {"description": "malformed", **err},
                      "401": {"description": "bad_signature, stale_timestamp, unauthorized", **err},
                      "403": {"description": "platform_not_allowed: this kind of platform may not send this "
                                             "type (only a verifier sends verification.completed, and only "
                                             "that)", **err},
                      "404": {"description": "unknown platform", **err},
                      "413": {"description": "too_large: a body over 1 MiB, nothing is stored", **err},
                      "422": {"description": "validation_failed: a type not listed here (refused, not stored: "
                                             "a sender learns of it at once rather than from an outcome), or a "
                                             "webhook-id over 255 characters", **err},
                      "503": {"description": "unavailable: the database cannot be reached, nothing is stored; "
                                             "send it again after Retry-After seconds", **err,
                              "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}}}}}}


def OUTBOUND_WEBHOOKS() -> dict:
    """The OpenAPI 3.1 `webhooks` object: what a platform's webhook URL receives."""
    def body(kind: str) -> dict:
        return {"type": "object", "required": ["type", "id", "created_at", "data"], "properties": {
            "type": {"const": kind}, "id": {"type": "string", "description": "the event id, also webhook-id"},
            "created_at": {"type": "string", "format": "date-time"},
            "data": {"type": "object", "required": ["binding", "transition"], "properties": {
                "binding": {"$ref": REF.format("BindingOut"),
                            "description": "the binding after the transition, masked; `version` orders events"},
                "transition": {"type": "object", "properties": {
                    "event": _STR, "from": {"type": ["string", "null"]}, "to": _STR,
                    "actor": {"type": "object", "properties": {
                        "kind": {"enum": ["person", "operator", "system", "verifier", "staff"]},
                        "id": {"type": ["string", "null"],
                               "description": "a person's opaque id (psn_…), the verifier's platform id, the "
                                              "system's component (timer, registry:<platform>), or for a "
                                              "service hall's staff (`staff`: an identity check in person) "
                                              "the platform whose hall it was; null for an operator: the "
                                              "bureau's staff are not named to platforms"}}},
                    "reason": {"type": ["string", "null"]},
                    "request": {"type": ["object", "null"], "properties": {
                        "id": {**_STR, "description": "the request that made the transition (its X-Request-Id; "
                                                      "webhook:<webhook-id> for a webhook's)"},
                        "idempotency_key": {"type": ["string", "null"],
                                            "description": "the Idempotency-Key it was sent with (null without "
                                                           "one, or when it could hold a person's number)"}},
                        "description": "null for a timer's transition or a command at the bureau's console"}}}}}}}

    def relocated() -> dict:  # binding.relocated also says where the binding was
        schema = body("binding.relocated")
        schema["properties"]["data"]["required"].append("relocated_from")
        schema["properties"]["data"]["properties"]["relocated_from"] = {
            "type": "object", "required": ["grantor_region", "beneficiary_region"],
            "description": "the pooling regions the binding held before the move (their provinces get this event too)",
            "properties": {"grantor_region": _STR, "beneficiary_region": _STR}}
        return schema
    return {kind: {"post": {
        "summary": kind, "tags": ["events"],
        "description": SIGNED + ". Sent to each platform the binding concerns that registered a webhook URL, "
                       "in version order per binding (version n+1 only after n was acknowledged), at least "
                       "once: drop a repeated webhook-id. A platform that becomes concerned when a binding "
                       "moves into its provinces (binding.relocated) first hears of it at that version; "
                       "every event carries the whole binding.",
        "parameters": _headers(),
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": relocated() if kind == "binding.relocated" else body(kind)}}},
        "responses": {"2XX": {"description": "acknowledged: this platform holds this version"},
                      "default": {"description": "not acknowledged: retried on the documented schedule"}}}}
        for kind in OUTBOUND} | {SESSION_REQUESTED: SESSION_REQUEST_DOC} | {
        kind: _settlement_doc(kind) for kind in SETTLEMENT_EVENTS}


SETTLEMENT_EVENTS = ("settlement.completed", "settlement.reversed")


def _settlement_doc(kind: str) -> dict:
    return {"post": {
        "summary": kind, "tags": ["events"],
        "description": SIGNED + ". Sent to the platform that made the settlement, each platform serving the "
                       "province of the beneficiary or of a grantor who paid (and the national platform), at least once: drop a repeated webhook-id. Not "
                       "ordered with binding events; `data.settlement.status` says which state it reports.",
        "parameters": _headers(),
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["type", "id", "created_at", "data"], "properties": {
                "type": {"const": kind}, "id": {"type": "string", "description": "the event id, also webhook-id"},
                "created_at": {"type": "string", "format": "date-time"},
                "data": {"type": "object", "required": ["settlement"], "properties": {
                    "settlement": {"$ref": REF.format("SettlementOut")},
                    "platform_id": {"type": "string", "description": "the platform that made the settlement"}}}}}}}},
        "responses": {"2XX": {"description": "acknowledged"},
                      "default": {"description": "not acknowledged: retried on the documented schedule"}}}}


SESSION_REQUESTED = "verification.session_requested"
# to the face-verification provider only (workflows/face_sessions.py): the one message that carries a
# person's whole ID number and name, because the provider must check the face against them
SESSION_REQUEST_DOC = {"post": {
    "summary": SESSION_REQUESTED, "tags": ["events"],
    "description": SIGNED + ". Sent to the face-verification provider (a platform of kind `verifier` serving "
                   "the beneficiary's province) to open a session for one verification attempt; every ask of "
                   "the same attempt has the same id (drop a repeat). Answer 2xx, optionally with "
                   "`{\"session_id\"}`, then post `verification.completed` to `callback_url` before "
                   "`deadline_at`; no result by then counts as a failed attempt.",
    "parameters": _headers(),
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["type", "id", "created_at", "data"], "properties": {
            "type": {"const": SESSION_REQUESTED}, "id": {"type": "string", "description": "evt_<verification_id>"},
            "created_at": {"type": "string", "format": "date-time"},
            "data": {"type": "object", "required": ["verification_id", "binding_id", "attempt_no", "deadline_at",
                                                    "callback_url", "subject"], "properties": {
                "verification_id": _STR, "binding_id": _STR, "attempt_no": {"type": "integer"},
                "deadline_at": {"type": "string", "format": "date-time"},
                "callback_url": {"type": "string", "description": "where to post verification.completed"},
                "subject": {"type": "object", "required": ["person_id", "id_number", "name"],
                            "description": "the person to verify, unmasked (this message only)",
                            "properties": {"person_id": _STR, "id_number": _ID_NUMBER, "name": _STR}}}}}}}}},
    "responses": {"2XX": {"description": "session opened (body may name it: {session_id})"},
                  "default": {"description": "not opened: asked again with a growing delay while the attempt "
                                             "is pending"}}}}
