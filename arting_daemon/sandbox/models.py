"""The sandbox's public data shapes: its settings, fault specs, request log and jobs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import catalog

#: Routes a fault can name (plus "*"): the Arting API, its image URLs and its storage.
FAULT_ROUTES = ("create", "get", "i2i_create", "i2i_get", "signed_urls", "oss_put", "cdn",
                "enhance_create", "enhance_get", "image")
_CREATES, _GETS = ("create", "i2i_create", "enhance_create"), ("get", "i2i_get", "enhance_get")

#: Every fault kind and the routes it can act on. Kinds that change a job, or a
#: poll answer, only make sense on some routes; the rest replace any answer.
FAULT_KINDS: dict[str, tuple[str, ...]] = {
    **{kind: FAULT_ROUTES for kind in (
        "cf_challenge", "cf_challenge_v2", "cf_html_200", "cf_1020", "cf_5xx",
        "cf_rate_limit", "rate_limit", "quota", "http_error", "slow", "reset",
        "truncated_json", "token_expired", "invalid_token", "reject", "oversized")},
    "fail": _CREATES + _GETS,
    "never_finish": _CREATES,
    "fail_code": _GETS,
    "empty_output_done": _GETS,
    "expired_image": ("image", "cdn"),
    "storage_refused": ("oss_put",),
}


#: Answers whose shape a replay can set (``answers``): a create, a poll while pending,
#: done or failed, the refusal of an unknown request id, and of a token.
AnswerKind = Literal["create", "pending", "done", "failed", "not_found", "token_refused"]
ANSWER_KINDS: tuple[str, ...] = get_args(AnswerKind)


class RecordedAnswer(BaseModel):
    """An answer as Arting gave it (from a check's record). The sandbox sends ``body``
    with ``status``, filling in only ``data.request_id`` and ``data.output`` where the
    body has them, so the recorded shape, codes, messages and literals come back."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(200, ge=100, le=599)
    body: Any


class SandboxConfig(BaseModel):
    """How the emulated Arting behaves. Unknown details of the real one are switches here."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    auth_mode: Literal["lenient", "uuid", "jwt", "strict"] = "lenient"
    auth_error_http: bool = False
    errors_as_http: bool = False
    same_token_poll: bool = False

    generation_time: float = Field(0.0, ge=0)
    generation_dist: Literal["fixed", "lognormal", "uniform"] = "fixed"
    generation_median: float = Field(8.0, gt=0)
    generation_sigma: float = Field(0.6, ge=0)
    generation_max: float = Field(60.0, ge=0)
    generation_low: float = Field(0.0, ge=0)
    generation_high: float = Field(10.0, ge=0)
    complete_after_polls: int | None = Field(None, ge=1)

    #: ``data.status`` while pending, when done, when failed (strings or integers).
    pending_status: str | int = "processing"
    done_status: str | int = "success"
    failed_status: str | int = "failed"
    #: Answers replayed from a record, by kind (see ``RecordedAnswer``); the rest are the
    #: sandbox's own.
    answers: dict[AnswerKind, RecordedAnswer] = Field(default_factory=dict)
    #: Result images are these files, in turn, instead of pictures the sandbox draws.
    image_files: list[str] = Field(default_factory=list)

    allowed_models: list[str] = Field(default_factory=lambda: list(catalog.MODELS))
    max_samples: int = Field(4, ge=1)
    min_side: int = Field(64, ge=1)
    max_side: int = Field(2048, ge=1)
    img2img_enabled: bool = True
    #: A create (or signed-URL or enhance request) without ``Authorization`` fails with
    #: "Authorization failed", as Arting's have since about July 2025 (§11).
    require_identity: bool = True

    #: Where signed URLs point (default: the sandbox itself), and how long a PUT URL lives.
    storage_url: str | None = None
    storage_url_ttl: float = Field(900.0, ge=0)

    enhance_enabled: bool = True
    enhance_scales: list[int] = Field(default_factory=lambda: [2, 4])
    enhance_versions: list[str] = Field(default_factory=lambda: ["v1.4"])
    enhance_max_side: int = Field(2048, ge=1)
    enhance_pending_status: int = 0
    enhance_done_status: int = 1
    enhance_failed_status: int = -1

    #: Each identity's credit: ``remain_balance`` in poll answers, spent per image and per
    #: upscale; a create it cannot pay for is refused. None: no balance at all.
    balance_start: int | None = Field(1000, ge=0)
    balance_per_image: int = Field(1, ge=0)
    balance_per_upscale: int = Field(1, ge=0)

    nsfw_mode: Literal["allow", "placeholder", "refuse"] = "allow"
    nsfw_words: list[str] = Field(default_factory=lambda: ["nsfw", "nude"])
    image_expiry: float | None = Field(None, ge=0)

    #: When set, API requests without ``Cookie: cf_clearance=<this>`` get Cloudflare's
    #: challenge page, as from a zone that challenges every visitor without a clearance.
    cf_clearance: str | None = None
    #: When on, API requests that do not look like a browser's (``cloudflare.not_a_browser``:
    #: its headers, their order and case, its User-Agent and client hints agreeing, HTTP/2
    #: offered) get the challenge page, as from a zone that checks fingerprints.
    cf_browser_check: bool = False

    rate_limit_requests: int | None = Field(None, ge=1)
    rate_limit_window: float = Field(60.0, gt=0)
    rate_limit_per: Literal["token", "ip"] = "token"

    seed: int = 0
    public_url: str | None = None

    @field_validator("public_url", "storage_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _ranges(self) -> SandboxConfig:
        if self.min_side > self.max_side:
            raise ValueError("min_side must not exceed max_side")
        if self.generation_low > self.generation_high:
            raise ValueError("generation_low must not exceed generation_high")
        return self


class FaultSpec(BaseModel):
    """One injected misbehaviour of an emulator: which kind, on which route, on which
    requests. It lets the first ``after`` matching requests through, then fires on every
    ``every``-th until it has fired ``count`` times."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    route: str = "*"
    after: int = Field(0, ge=0)
    count: int | None = Field(None, ge=0)
    every: int = Field(1, ge=1)
    status: int | None = Field(None, ge=100, le=599)
    retry_after: float | None = Field(None, ge=0)
    delay: float | None = Field(None, ge=0)
    #: The answer's own code (Arting's envelope code, a proxy's return code) and words.
    code: int | None = None
    message: str | None = None

    def applies_to(self, route: str) -> bool:
        return self.route in ("*", route)


class Fault(FaultSpec):
    """A fault of Arting's emulator (its kinds and routes: ``FAULT_KINDS``)."""

    body: Literal["json", "empty"] = "json"

    @model_validator(mode="after")
    def _known(self) -> Fault:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.route != "*" and self.route not in FAULT_ROUTES:
            raise ValueError(f"unknown route {self.route!r}; known: {', '.join(FAULT_ROUTES)}")
        if self.route != "*" and self.route not in FAULT_KINDS[self.kind]:
            raise ValueError(f"fault {self.kind!r} does not apply to route {self.route!r}")
        if self.kind == "slow" and not self.delay:
            raise ValueError("a slow fault needs a delay (seconds)")
        return self

    def applies_to(self, route: str) -> bool:
        return self.route in ("*", route) and route in FAULT_KINDS[self.kind]


@dataclass
class Recorded:
    """One request as the sandbox received it (admin requests are not recorded)."""

    route: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    client_ip: str | None
    time: float

    def header(self, name: str) -> str | None:
        """A header value, looked up case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def to_json(self) -> dict:
        return {**asdict(self), "body": _jsonable(self.body)}


@dataclass
class SandboxJob:
    """A generation job; ``done_at`` is when it is (or was due to be) done."""

    request_id: str
    route: Literal["txt2img", "img2img"]
    body: dict
    token: str | None
    created_at: float
    done_at: float | None
    seed: int
    model: str
    width: int
    height: int
    samples: int
    polls: int = 0
    state: Literal["pending", "done", "failed", "never"] = "pending"
    outputs: list[str] = field(default_factory=list)
    blocked: bool = False
    fail_on_poll: bool = False
    init_image: bytes | None = field(default=None, repr=False)
    strength: float = 1.0

    def to_json(self) -> dict:
        out = asdict(self)
        out["body"] = _jsonable(self.body)
        out["init_image"] = None if self.init_image is None else len(self.init_image)
        return out


def _jsonable(value: Any) -> Any:
    """Bytes (raw bodies, uploaded files) become a size and a short text preview."""
    if isinstance(value, bytes):
        return {"bytes": len(value), "preview": value[:200].decode("utf-8", "replace")}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
