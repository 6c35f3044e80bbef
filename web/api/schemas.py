"""Request bodies (validated with pydantic) and answer shapes (for the OpenAPI document).

Amounts are integer fen. Relationship values: spouse, parent, child, sibling, grandparent, grandchild —
the relation of the beneficiary to the grantor (`child`: the beneficiary is the grantor's child)."""
from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from workflows import characters, free_text, in_person
from workflows.rules import MAX_FEN

ID_NUMBER = Field(description="18-character resident ID number (GB 11643-1999); never put it in a URL",
                  min_length=1, max_length=32)


class Body(BaseModel):
    """A request body: unknown fields are refused, and no text holds a control or direction-formatting
    character (`workflows/characters.py`; a `reason` may span lines)."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _characters(cls, value, info: ValidationInfo):
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(t, str) and characters.refused(t, lines=info.field_name == "reason") for t in texts):
            raise ValueError(f"the text {characters.WHAT}")
        return value


class ActorIn(Body):
    """A person, named by ID number or by opaque id (exactly one of the two)."""
    # "exactly one" in the document too, so that a generated client or validator refuses both or neither
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["id_number"], "properties": {"id_number": {"type": "string"}}},
        {"required": ["id"], "properties": {"id": {"type": "string"}}}]})
    # any other kind (operator, system, …) is a wrong actor: 403 not_your_binding (DESIGN §5), not a schema error
    kind: str = Field(max_length=16, json_schema_extra={"enum": ["person"]},
                      description="platforms act for persons they have real-name verified (`person`; another "
                                  "kind is 403 not_your_binding)")
    id_number: str | None = Field(None, min_length=1, max_length=32,
                                  description="18-character resident ID number; never put it in a URL")
    id: str | None = Field(None, max_length=40, description="or the person's opaque id (psn_…)")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.id_number is None) == (self.id is None):
            raise ValueError("give exactly one of id_number and id")
        return self


class PersonIn(Body):
    id_number: str = ID_NUMBER
    name: str = Field(min_length=1, max_length=64)
    insurance_type: Literal["employee", "resident", "none"]
    insurance_status: Literal["active", "suspended", "ended"]
    region_code: str = Field(pattern=r"^\d{6}$", description="pooling region (统筹区) where insured, e.g. 320100")
    real_name_verified: bool | None = Field(None, strict=True, description="true or false (never \"yes\" or 1); "
                                            "absent: unchanged (false for a person new to Gongji), as balance_fen")
    balance_fen: int | None = Field(None, ge=0, le=MAX_FEN, strict=True, description="personal account balance, fen")
    updated_at: AwareDatetime | None = Field(None, description="the registry's as-of time of these facts; an "
                                             "older one than Gongji holds is refused as `stale` (409)")


class LookupIn(Body):
    id_number: str = ID_NUMBER


class DeductionOrderIn(Body):
    binding_ids: list[str] = Field(max_length=50)


class InviteIn(Body):
    grantor_id_number: str = ID_NUMBER
    beneficiary_id_number: str = ID_NUMBER
    beneficiary_name: str = Field(min_length=1, max_length=64)
    relationship: str = Field(description="spouse | parent | child | sibling | grandparent | grandchild | "
                                          "spouse_parent (the grantor's spouse's parent: only where the region "
                                          "allows it)",
                              max_length=16)
    commitment_version: str | None = Field(None, max_length=32,
                                           description="the commitment letter (承诺书) version the grantor accepted")
    channel: Literal["app", "counter"] = "app"


class ActorBody(Body):
    actor: ActorIn
    reason: str | None = Field(None, max_length=free_text.REASON_CHARS)
    channel: Literal["app", "counter"] | None = None
    version: int | None = Field(None, ge=1, strict=True, description="optional: the binding version the request "
                                "was made from (as the platform last saw it); when the binding has moved on, "
                                "409 conflict and nothing changes")


class InPersonIn(Body):
    """A service hall's report that its staff checked the beneficiary's identity in person."""
    staff_id: str = Field(min_length=1, max_length=in_person.STAFF_ID_CHARS, pattern=r"^[^:]+$",
                          description="the member of the hall's staff who checked the documents, as the platform "
                                      "knows them (kept in Gongji's history; other platforms see only that the "
                                      "platform's staff acted); no ID or mobile number")
    reason: str = Field(min_length=1, max_length=free_text.REASON_CHARS,
                        description="what was checked and where it is filed, e.g. 居民身份证原件核验，"
                                    "《个人账户家庭共济申请表》编号 XJ-2026-000123 (no ID number: one is masked)")
    version: int | None = Field(None, ge=1, strict=True, description="optional: the binding version the request "
                                "was made from; when the binding has moved on, 409 conflict and nothing changes")


class AuthorizeIn(ActorBody):
    amount_fen: int | None = Field(..., ge=0, le=MAX_FEN, strict=True,
                                   description="authorized cap in fen; null = the whole balance")


class PersonRef(BaseModel):
    id: str
    id_number_masked: str = Field(examples=["320***********123X"])
    name_masked: str = Field(examples=["张*"])
    region_code: str


class PersonOut(PersonRef):
    insurance_type: str
    insurance_status: str
    real_name_verified: bool
    balance_fen: int
    commitment_version: str | None
    deceased: bool
    updated_at: str


class VerificationOut(BaseModel):
    verification_id: str
    attempt_no: int
    status: Literal["pending", "passed", "failed", "timed_out", "abandoned"]
    opened_at: str
    deadline_at: str
    completed_at: str | None
    reason: str | None
    verifier_id: str | None
    # the session at the provider: queued (nobody asked it within a minute: the scheduler asks again),
    # requested (a worker is asking), opened, error (the provider refused or could not be reached)
    provider_status: Literal["queued", "requested", "opened", "error"] | None = None
    provider_session_id: str | None = None
    provider_requests: int = 0  # how many times a worker asked the provider to open it
    provider_error: str | None = None


class BindingOut(BaseModel):
    id: str
    state: Literal["invited", "face_verified", "accepted", "authorized", "unbound", "declined", "cancelled",
                   "expired", "verification_failed", "rejected"]
    version: int
    grantor: PersonRef
    beneficiary: PersonRef
    relationship: str = Field(description="the beneficiary's relation to the grantor (API.md's values, and "
                              "spouse_parent where a region allows it)")
    verification_method: Literal["face", "guardian", "in_person"] = Field(
        description="how the relative proved who they are: face (the app's face check), guardian (under 16: "
                    "no check), in_person (documents checked at a service hall, where both regions' policies "
                    "allow it: `POST /bindings/{id}/verification/in-person`)")
    channel: str = Field(description="where the invitation was taken: app or counter (it changes no step)")
    authorized_amount_fen: int | None = Field(description="the cap the grantor set, fen (null: the whole "
                                              "balance, or never authorized); kept after the binding ended")
    authorization: Literal["amount", "whole_balance"] | None = Field(description="while authorized: how it "
                                                                     "pays; null in any other state")
    authorized_at: str | None = Field(None, description="when the grantor's account was bound to this binding: "
                                      "its first authorization (a new amount keeps it); the deduction order's "
                                      "'newest' is the binding bound last")
    failed_verifications: int
    deadline_at: str | None = Field(description="when the binding's next timer fires; null when none")
    deadline_event: str | None = Field(description="that timer: expire (the invitation's validity) or "
                                       "verification_timeout (the open face-verification attempt's)")
    expires_at: str | None = Field(description="the end of the invitation's validity; kept once the binding "
                                   "moved past it (it no longer applies then)")
    province_code: str = Field(description="the grantor's province when invited (the binding's home; never "
                                           "changes)")
    grantor_region: str
    beneficiary_region: str
    policy_id: int = Field(description="the region policy version the binding was made under, whose terms "
                                       "(attempts, timeout) it keeps; GET /api/v1/regions/{code} answers the "
                                       "version in force with its policy_id")
    platform_id: str | None = Field(description="the platform that took the invitation")
    deduction_rank: int | None = Field(None, description="the beneficiary's deduction order for this binding "
                                       "(1 pays first; `PUT /persons/{id}/deduction-order`), null if not set; "
                                       "in `GET /bindings/{id}` only (the order changes no version)")
    authorization_used_fen: int | None = Field(None, description="fen this binding's authorization has paid "
                                               "(completed settlements; a reversal gives it back): an authorized "
                                               "amount is a total for the binding's life, so what is left is "
                                               "`authorized_amount_fen` minus this; in `GET /bindings/{id}` only")
    created_at: str
    updated_at: str
    ended_at: str | None
    end_event: str | None
    ended_by: Literal["person", "operator", "system", "verifier"] | None = Field(
        None, description="who ended it: one of its persons, an operator, the system (a person's death, "
        "insurance ended, a timer) or the face-verification provider (the last attempt failed); only a "
        "person's own unbind or cancel counts against the frequency limit")
    verifications: list[VerificationOut] | None = None
    sync: dict[str, int] | None = None  # platform id → the binding version it acknowledged (answered 2xx to)


class TransitionOut(BaseModel):
    seq: int
    from_: str | None = Field(alias="from")
    to: str
    event: str
    actor: dict = Field(description="{kind: person|operator|system|verifier|staff, id}: id is the person's "
                                     "opaque id, the verifier's platform id, the system's component, or for a "
                                     "service hall's staff the platform whose hall it was; null for an operator "
                                     "(the bureau's staff are not named to platforms)")
    channel: str | None
    reason: str | None
    at: str
    request_id: str | None = Field(None, description="the id of the request that made the transition (its "
                                   "X-Request-Id; `webhook:<webhook-id>` for a webhook's); null for a timer's "
                                   "or a command run at the bureau, and for transitions before 2026-11-26")


class HistoryOut(BaseModel):
    binding_id: str
    transitions: list[TransitionOut]


class VerificationStarted(BaseModel):
    verification_id: str
    state: str
    attempt: VerificationOut
    binding: BindingOut


class FamilyOut(BaseModel):
    person: PersonOut
    as_grantor: list[BindingOut]
    as_beneficiary: list[BindingOut]


class DeductionOrderOut(BaseModel):
    person_id: str
    binding_ids: list[str]


class RegionOut(BaseModel):
    code: str
    name: str
    province_code: str
    platform: str | None
    policy_version: int
    policy_id: int | None = Field(None, description="that version's id, as a binding's policy_id names the version "
                                  "it was made under")
    effective_from: str
    commitment_version: str
    allowed_relationships: list[str]
    intra_province: bool
    cross_province: bool
    invitation_ttl_s: int
    verification_timeout_s: int
    max_verification_attempts: int
    member_limits: dict
    frequency_limit: dict
    deduction_order_policy: str
    in_person_verification: bool = Field(description="whether the region's service hall may check a "
                                         "relative's identity documents in person instead of the app's face check "
                                         "(`POST /bindings/{id}/verification/in-person`)")


class FieldError(BaseModel):
    loc: str = Field(description="where in the body, e.g. actor.id_number (never the value sent)")
    msg: str


class Problem(BaseModel):
    type: str = Field(description="/api/v1/problems/{code}: what the code means")
    title: str
    status: int
    detail: str
    code: str = Field(description="stable; the list: GET /api/v1/problems")
    instance: str | None = None
    request_id: str | None = Field(None, description="this request's id, also in the X-Request-Id header: quote "
                                   "it to the bureau, whose log lines name it (a replayed answer, "
                                   "Idempotent-Replayed, is the first one word for word: its body names the "
                                   "first request, its header this one)")
    # present with some codes only
    errors: list[FieldError] | None = Field(None, description="validation_failed: each field refused")
    retry_after_s: int | None = Field(None, description="too_frequent: seconds until one more change fits; "
                                      "unavailable: seconds to wait for the database (also the Retry-After header)")
    existing_binding_id: str | None = Field(None, description="duplicate_binding: the live binding of the pair")
    commitment_version: str | None = Field(None, description="commitment_required: the letter version the "
                                           "grantor's region asks for")
    binding_ids: list[str] | None = Field(None, description="not_your_binding on a deduction order: the ids that "
                                          "are not the person's live bindings as beneficiary")


class SyncPage(BaseModel):
    bindings: list[BindingOut]
    next: str | None  # give it back as `after` for the next page (and later, to poll for changes)
    has_more: bool


class WebhookStatus(BaseModel):
    webhook_id: str
    type: str
    status: Literal["pending", "processed"] = Field(description="pending: stored, not applied yet (or being "
                                                    "retried: see attempts); processed: `outcome` is final")
    outcome: str | None = Field(description="null while pending, else final: "
                                "verification.completed: passed, failed, ignored_<status> (the attempt had "
                                "already ended: ignored_timed_out also when the result came after its "
                                "deadline); person.updated, person.deceased: applied, or stale (not newer than "
                                "the fact held); relationship.ended: the named binding's new state (unbound, "
                                "rejected) or no_binding; binding.unbind_requested: unbound; a refusal: its "
                                "error code (GET /api/v1/problems/{code}, e.g. not_found, validation_failed, "
                                "illegal_transition); failed:<error type> after 25 failed runs")
    detail: str | None = Field(None, description="a refusal's reason, in Gongji's words (ID and mobile numbers "
                               "masked), e.g. `validation_failed: data.name holds a control or "
                               "direction-formatting character`; null otherwise (a failure's error is the bureau's "
                               "to read)")
    attempts: int = Field(description="runs so far; a run that failed is retried by the worker")
    received_at: str
    processed_at: str | None


class SyncStatus(BaseModel):
    platform: str
    behind: int  # deliveries not acknowledged yet
    failing: int
    dead: int  # waiting for an operator's replay
    oldest_age_s: float  # seconds since the oldest unacknowledged event
    oldest_open_age_s: float = 0.0  # the oldest still being tried (pending or failing; a dead one waits for a replay)
