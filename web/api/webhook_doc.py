"""The OpenAPI description of the inbound webhook endpoint (Standard Webhooks)."""
from __future__ import annotations


def WEBHOOK_PATHS(problem_ref: dict) -> dict:
    headers = [{"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
               for h in ("webhook-id", "webhook-timestamp", "webhook-signature")]
    body = {"type": "object", "required": ["type", "data"], "properties": {
        "type": {"enum": ["verification.completed", "person.updated", "person.deceased", "relationship.ended",
                          "binding.unbind_requested"]},
        "data": {"type": "object"}}}
    err = {"content": {"application/problem+json": {"schema": problem_ref}}}
    return {"/webhooks/{platform}": {"post": {
        "summary": "Inbound webhook from a platform or the face-verification provider",
        "description": "Standard Webhooks: HMAC-SHA256 over `id.timestamp.body` with the platform's whsec_ "
                       "secret, ±5 min tolerance. Stored before it is answered (202), deduplicated on "
                       "webhook-id (a duplicate answers 200 and changes nothing), processed by a worker.",
        "tags": ["webhooks"],
        "parameters": [{"name": "platform", "in": "path", "required": True, "schema": {"type": "string"}},
                       *headers],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {"202": {"description": "stored"}, "200": {"description": "duplicate, ignored"},
                      "400": {"description": "malformed", **err},
                      "401": {"description": "bad_signature, stale_timestamp, unauthorized", **err},
                      "403": {"description": "this platform may not send this type", **err},
                      "404": {"description": "unknown platform", **err}}}}}
