"""The platform JSON API under `/api/v1` (API.md): bearer-key authentication, JSON body parsing with
pydantic, `Idempotency-Key` on writes, and a registry of endpoints from which the OpenAPI document is built."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import wraps

from flask import Blueprint, Response, current_app, g, request
from pydantic import BaseModel, ValidationError

from workflows import characters, idempotency, platforms
from workflows.errors import DomainError

from . import codes as problem_codes
from .problems import MEDIA, from_error, problem

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC = ("api.openapi", "api.problem_list", "api.problem_doc")


@dataclass
class Endpoint:
    method: str
    path: str
    summary: str
    body: type[BaseModel] | None
    answer: type[BaseModel] | None
    status: tuple[int, ...]  # its success statuses, the usual one first
    tag: str
    codes: frozenset[str] = frozenset()  # the problem codes it may answer (`codes.declare`), set with the view
    query: tuple[tuple[str, dict, str], ...] = ()  # (name, JSON schema, description) of query parameters
    kinds: tuple[str, ...] = ()  # the kinds of platform that may call it
    body_required: bool = True  # False: a body that is not a JSON object is `{}` (added to an endpoint that had none)


# Registry and insurance platforms act for persons; a face-verification provider (`verifier`) only sends
# its results (`/webhooks/<platform>`) and reads what became of them: an endpoint names who may call it.
REGISTRIES = ("national", "province")
ENDPOINTS: list[Endpoint] = []
_KINDS: dict[str, tuple[str, ...]] = {}  # Flask endpoint name → the kinds of platform that may call it


def db():
    return current_app.extensions["gongji"]["db"]


@bp.before_request
def authenticate():
    if request.endpoint in PUBLIC:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return problem("unauthorized", "send Authorization: Bearer <platform api key>")
    try:
        g.platform = platforms.authenticate(db(), key.strip())
    except DomainError as exc:
        return from_error(exc)
    allowed = _KINDS.get(request.endpoint)
    if allowed is not None and g.platform.kind not in allowed:
        return problem("platform_not_allowed", f"a {g.platform.kind} platform may not call this endpoint")
    return None


def _json(status: int, payload) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json")


def parse(model: type[BaseModel], *, optional: bool = False):
    """The body as `model`. `optional` (a body added to an endpoint that ignored its body): anything but a
    JSON object is no body, `{}`, as before, so a client that always sent something keeps working; unless
    it names one of the model's fields (a JSON object gone wrong, a form): that is refused, not dropped."""
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested thousands deep
        if not optional:
            raise DomainError("malformed", "the body is not valid JSON") from None
        data = None
    if optional and not isinstance(data, dict):
        if names_a_field(model, raw):
            raise DomainError("malformed", "the body names a field of this request but is not a JSON object")
        data = {}
    if not isinstance(data, dict):
        raise DomainError("malformed", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # report where and why, never the submitted value
        errors = [{"loc": ".".join(characters.as_named(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise DomainError("validation_failed", "the body does not match the schema", errors=errors) from None


def _check_values(path_values: dict, query: tuple) -> None:
    """A path value with a character no id holds (`workflows/characters.py`: a NUL, a control, a direction
    mark) is 404 as an id nobody holds; such a query value is 422: the same answer on SQLite and PostgreSQL
    (which cannot store a NUL, and refused it only after the fact)."""
    if any(isinstance(v, str) and characters.refused(v) for v in path_values.values()):
        raise DomainError("not_found", "no such resource")
    for name, *_ in query:
        if any(characters.refused(v) for v in request.args.getlist(name)):
            raise DomainError("validation_failed", f"the query value {name} {characters.WHAT}")


def _field_names(model: type[BaseModel]) -> set[str]:
    """A model's field names and the names they also accept (`AliasChoices`)."""
    names = set(model.model_fields)
    for field in model.model_fields.values():
        names.update(c for c in getattr(field.validation_alias, "choices", ()) if isinstance(c, str))
    return names


def names_a_field(model: type[BaseModel], raw: bytes) -> bool:
    """Whether a body that is not a JSON object still carries one of `model`'s fields as a key: `"reason":`
    or `reason=` in any case and any of JSON's encodings (a JSON object gone wrong, a form); not the word in
    a text (`"no reason given"`, `["reason"]`)."""
    try:
        text = raw.decode(json.detect_encoding(raw), errors="ignore")
    except LookupError:
        text = raw.decode("utf-8", errors="ignore")
    names = "|".join(re.escape(n) for n in sorted(_field_names(model)))
    return re.search(rf"""(?:^|[{{&,;\s"'])(?:{names})\s*["']?\s*[:=]""", text, re.IGNORECASE) is not None


def endpoint(method: str, path: str, summary: str, *, body=None, answer=None, status: int | tuple[int, ...] = 200,
             tag: str = "bindings", codes: tuple[str, ...] = (), query=(), any_text=(),
             kinds: tuple[str, ...] = REGISTRIES, body_required: bool = True):
    """Register a route; writes honour `Idempotency-Key`. The view returns a JSON-able payload. `any_text`:
    path parameters that may hold any character, `/` included (the client percent-encodes it). `kinds`:
    the kinds of platform that may call it (any other is 403 `platform_not_allowed`). `status`: the success
    status, or several (the view then returns `(status, payload)`), each documented with the answer.
    `codes`: the problem codes of its own refusals (those of its kind are added: `codes.py`, which also
    checks every refusal against them). `body_required=False`: a body added to an endpoint that had none
    (and ignored whatever was sent): one that is not a JSON object stands for `{}` (`parse`), and the model
    should ignore unknown fields."""
    statuses = status if isinstance(status, tuple) else (status,)
    ep = Endpoint(method, path, summary, body, answer, statuses, tag, query=tuple(query), kinds=tuple(kinds),
                  body_required=body_required)
    ENDPOINTS.append(ep)
    flask_path = path
    for name in any_text:
        flask_path = flask_path.replace("{" + name + "}", "<path:" + name + ">")
    flask_path = flask_path.replace("{", "<").replace("}", ">")

    def wrap(view):
        name = f"{bp.name}.{view.__name__}"
        ep.codes = problem_codes.declare(name, method=method, has_body=body is not None,
                                         restricted=set(kinds) != set(platforms.KINDS), codes=tuple(codes),
                                         has_values="{" in path or bool(query))

        @wraps(view)
        def run(**kwargs):
            _check_values(kwargs, ep.query)
            if body is not None:
                kwargs["body"] = parse(body, optional=not body_required)
            out = view(**kwargs)
            code, payload = out if isinstance(out, tuple) else (statuses[0], out)
            return _json(code, payload)

        @wraps(view)
        def with_key(**kwargs):
            key = request.headers.get("Idempotency-Key")
            if method == "GET" or key is None:
                return run(**kwargs)
            raw = request.get_data(cache=True)
            claimed, replay = idempotency.claim(db(), g.platform.id, key,
                                                idempotency.fingerprint(method, request.path, raw),
                                                also=idempotency.other_fingerprints(method, request.path, raw))
            if replay is not None:  # every answer but a 2xx is a problem (the kept ones have no headers)
                resp = Response(replay[1], status=replay[0],
                                mimetype=MEDIA if replay[0] >= 400 else "application/json")
                resp.headers["Idempotent-Replayed"] = "true"
                return resp
            code = None
            try:
                resp = run(**kwargs)
            except DomainError as exc:
                resp, code = from_error(exc), exc.code
            except Exception:
                idempotency.finish(db(), claimed, 500, "")
                raise
            idempotency.finish(db(), claimed, resp.status_code, resp.get_data(as_text=True), code=code)
            return resp

        bp.add_url_rule(flask_path, view.__name__, with_key, methods=[method])
        _KINDS[name] = tuple(kinds)
        return view
    return wrap


from . import bindings, inbound, openapi, persons, settlements, sync  # noqa: E402,F401  (registers the routes)
