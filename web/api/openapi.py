"""`/api/v1/openapi.json`, built from the endpoint registry and the pydantic schemas, and
`/api/v1/problems/<code>` documenting each error code. Both are public (no key needed)."""
from __future__ import annotations

from flask import jsonify

from workflows.errors import CODES, DomainError

from . import ENDPOINTS, bp
from . import codes as problem_codes
from .schemas import ActorIn, BindingOut, PersonIn, Problem
from .webhook_doc import OUTBOUND_WEBHOOKS, WEBHOOK_PATHS

REF = "#/components/schemas/{model}"
SUCCESS = {200: "OK", 201: "Created", 202: "Accepted: stored, applied later"}
REPLAYED = {"description": "`true` when this is the stored answer to an earlier request with the same "
                           "Idempotency-Key and body (nothing was done again)",
            "schema": {"type": "string", "enum": ["true"]}}
RETRY_AFTER = {"description": "seconds to wait before trying again: until one more change fits the person's window "
                              "(429 too_frequent), while the database comes back (503 unavailable)",
               "schema": {"type": "integer", "minimum": 1}}


REQUEST_ID_IN = {"name": "X-Request-Id", "in": "header", "required": False,
                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
                 "description": "the caller's id for this request (a proxy's, the platform's own): kept when it "
                                "fits the pattern, holds no run of 15 digits nor a mobile number (separators "
                                "aside) and does not begin with `webhook:`; else Gongji makes one (`req_…`)"}
REQUEST_ID_OUT = {"description": "this request's id: the one sent (when kept) or `req_…`; also `request_id` in a "
                                 "problem body, in the log lines of the request, and in the history row and event "
                                 "of a transition it made", "schema": {"type": "string"}}


def _schema(model, components: dict) -> dict:
    schema = model.model_json_schema(ref_template=REF, by_alias=True)
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def document() -> dict:
    components: dict = {}
    problem_ref = _schema(Problem, components)
    paths: dict = {}
    for ep in ENDPOINTS:
        op = {"summary": ep.summary, "tags": [ep.tag], "operationId": f"{ep.method.lower()}_{ep.path}",
              "security": [{"platformKey": []}], "responses": {}}
        params = [seg[1:-1] for seg in ep.path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                for p in params]
        for name, schema, description in ep.query:
            op.setdefault("parameters", []).append({"name": name, "in": "query", "required": False,
                                                    "schema": schema, "description": description})
        if ep.method != "GET":
            op.setdefault("parameters", []).append(
                {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string",
                 "minLength": 1, "maxLength": 255}, "description": "same key + same body → the stored answer"})
        if ep.body is not None:
            op["requestBody"] = {"required": ep.body_required,
                                 "content": {"application/json": {"schema": _schema(ep.body, components)}}}
        for status in ep.status:
            ok = {"description": SUCCESS.get(status, "OK")}
            if ep.answer is not None:
                ok["content"] = {"application/json": {"schema": _schema(ep.answer, components)}}
            if ep.method != "GET":
                ok["headers"] = {"Idempotent-Replayed": REPLAYED}
            op["responses"][str(status)] = ok
        # this operation's own problem codes and those of its kind (web/api/codes.py), per status
        for status, codes in problem_codes.by_status(ep.codes).items():
            op["responses"][str(status)] = {"description": "codes: " + ", ".join(codes), "x-problem-codes": codes,
                                            "content": {"application/problem+json": {"schema": problem_ref}}}
            if status in (429, 503):
                op["responses"][str(status)]["headers"] = {"Retry-After": RETRY_AFTER}
        op["responses"]["default"] = {  # what any route may answer besides its own refusals
            "description": "401 unauthorized (no or a wrong key), 405 method_not_allowed (with Allow), "
                           "500 internal_error: always problem+json",
            "content": {"application/problem+json": {"schema": problem_ref}}}
        paths.setdefault("/api/v1" + ep.path, {})[ep.method.lower()] = op
    for model in (ActorIn, BindingOut, PersonIn):  # what the webhook bodies refer to
        _schema(model, components)
    paths.update(WEBHOOK_PATHS(problem_ref))
    listed = {"type": "object", "required": ["code", "status", "title"], "properties": {
        "code": {"type": "string"}, "status": {"type": "integer"}, "title": {"type": "string"}}}
    paths["/api/v1/problems"] = {"get": {
        "summary": "Every error code Gongji answers with, its HTTP status and title", "tags": ["Problems"],
        "operationId": "list_problems", "security": [],
        "responses": {"200": {"description": "the codes, sorted", "content": {"application/json": {
            "schema": {"type": "object", "required": ["problems"], "properties": {
                "problems": {"type": "array", "items": listed}}}}}},
            "default": {"description": "500 internal_error", "content": {
                "application/problem+json": {"schema": problem_ref}}}}}}
    paths["/api/v1/problems/{code}"] = {"get": {
        "summary": "What an error code means (the `type` of every problem answer points here)", "tags": ["Problems"],
        "operationId": "get_problem", "security": [],
        "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "the code, its HTTP status and title", "content": {"application/json": {
                "schema": {"type": "object", "required": ["code", "status", "title"], "properties": {
                    "code": {"type": "string"}, "status": {"type": "integer"}, "title": {"type": "string"}}}}}},
            "404": {"description": "no such code", "content": {"application/problem+json": {"schema": problem_ref}}},
            "default": {"description": "500 internal_error", "content": {
                "application/problem+json": {"schema": problem_ref}}}}}}
    for op in (op for path in paths.values() for op in path.values()):  # every answer names its request
        op.setdefault("parameters", []).append(REQUEST_ID_IN)               # (web/request_ids.py)
        for answer in op["responses"].values():
            answer["headers"] = {**answer.get("headers", {}), "X-Request-Id": REQUEST_ID_OUT}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gongji (共济) platform API", "version": "1.0.0",
                 "description": "Family mutual aid of employee medical-insurance personal accounts. Amounts are "
                                "integer fen. ID numbers travel only in bodies and come back masked."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "webhooks": OUTBOUND_WEBHOOKS(),
        "components": {"schemas": components,
                       "securitySchemes": {"platformKey": {"type": "http", "scheme": "bearer"}}},
    }


@bp.get("/openapi.json")
def openapi():
    return jsonify(document())


@bp.get("/problems")
def problem_list():
    return jsonify({"problems": [{"code": c, "status": st, "title": t} for c, (st, t) in sorted(CODES.items())]})


@bp.get("/problems/<code>")
def problem_doc(code: str):
    if code not in CODES:
        raise DomainError("not_found", "no such problem code")
    status, title = CODES[code]
    return jsonify({"code": code, "status": status, "title": title})
