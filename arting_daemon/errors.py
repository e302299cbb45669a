"""The one error taxonomy of the daemon.

Every failure a client can see is an ``ArtingError``. Each class carries what the
protocol facades need to render it (HTTP status, a stable ``code``, whether a retry
can help, ``Retry-After``), so each facade maps errors in exactly one place and no
facade needs to know where an error came from.
"""

from __future__ import annotations

import math
from typing import Any


class ArtingError(Exception):
    """Root of every error the daemon reports to a client."""

    status: int = 500
    code: str = "internal_error"
    #: False when repeating the same request cannot succeed (OpenAI's x-should-retry).
    retryable: bool = False
    #: True when the failed create surely made no job upstream, so resubmitting is safe.
    safe_to_resubmit: bool = False
    #: True when the error is about the upstream identity (token) that was used, so another
    #: identity may fare better and this one's health is affected.
    token_fault: bool = False
    #: Attributes a subclass adds, kept in ``to_dict`` and restored by ``error_from_dict``.
    extra_fields: tuple[str, ...] = ()

    def __init__(self, message: str, *, param: str | None = None,
                 retry_after: float | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        if retryable is not None:   # this instance knows better than its class
            self.retryable = retryable

    def retry_after_header(self) -> str | None:
        """``Retry-After`` in whole seconds (at least 1), or None when waiting won't help."""
        if self.retry_after is None:
            return None
        return str(max(1, math.ceil(self.retry_after)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary, as stored in job records and shown by the job API."""
        out: dict[str, Any] = {"type": type(self).__name__, "code": self.code,
                               "message": self.message}
        if self.param:
            out["param"] = self.param
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        for name in self.extra_fields:
            out[name] = getattr(self, name, None)
        return out


# --- the caller's side ----------------------------------------------------------

class InvalidRequest(ArtingError):
    """The request breaks a rule or a limit; ``param`` names the field."""

    status, code = 400, "invalid_request"


class DestinationRefused(InvalidRequest):
    """A URL the daemon was given to send something to is not one it may (``outbound``)."""

    code = "destination_refused"


class FeatureDisabled(InvalidRequest):
    """The request needs a feature this daemon has switched off."""

    code = "feature_disabled"


class Unauthorized(ArtingError):
    status, code = 401, "invalid_api_key"


class Forbidden(ArtingError):
    """The caller is known (or a page of another origin), and this is not theirs to do."""

    status, code = 403, "forbidden"


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"


class OriginNotAllowed(Forbidden):
    """A page of another origin (not in ``cors_origins``) asked for a change."""

    code = "origin_not_allowed"


class HostNotAllowed(ArtingError):
    """The request names a host the daemon does not answer to (``allowed_hosts``)."""

    status, code = 421, "host_not_allowed"


class NotFound(ArtingError):
    status, code = 404, "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(ArtingError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ArtingError):
    """A body that is not JSON (or multipart, where a route takes a form)."""

    status, code = 415, "unsupported_media_type"


class QueueFull(ArtingError):
    """Our own queue is full: come back after ``retry_after`` seconds."""

    status, code, retryable = 429, "rate_limit_exceeded", True


class QuotaExceeded(ArtingError):
    """One of the caller's own limits (``limit`` names it) is used up for now."""

    status, code, retryable = 429, "quota_exceeded", True
    extra_fields = ("limit",)

    def __init__(self, message: str, *, limit: str = "", **kw) -> None:
        super().__init__(message, **kw)
        self.limit = limit


class Unavailable(ArtingError):
    """This daemon cannot serve the request right now (it is shutting down, or the state
    it shares with its replicas is out of reach): another try, here or elsewhere, can."""

    status, code, retryable = 503, "unavailable", True


class Cancelled(ArtingError):
    """The job was cancelled by its caller (or the caller went away)."""

    status, code = 499, "cancelled"


class KeyCancelled(Cancelled):
    """The job was cancelled because its owner's key was revoked or expired: said with
    the key's code, so a client (the web page) tells it from a cancel it asked for."""

    code = "invalid_api_key"


class StageTimeout(ArtingError):
    """A stage of the job (queue, submit, generation, download) ran past its deadline."""

    status, code, retryable = 504, "timeout", True
    extra_fields = ("stage",)

    def __init__(self, message: str, *, stage: str = "job", **kw) -> None:
        super().__init__(message, **kw)
        self.stage = stage


# --- the upstream's side ----------------------------------------------------------

class UpstreamError(ArtingError):
    """Something between us and Arting went wrong."""

    status, code = 502, "upstream_error"


class UpstreamUnavailable(UpstreamError):
    """Arting could not be reached (DNS, refused, reset) or answered 5xx."""

    retryable = True


class UpstreamUnreachable(UpstreamUnavailable):
    """The request never reached Arting (the connection failed)."""

    safe_to_resubmit = True


class ProxyUnreachable(UpstreamUnreachable):
    """The proxy the daemon must go through could not be reached: nothing reached the
    upstream."""

    code = "proxy_unreachable"


class ProxyRefused(UpstreamError):
    """The proxy refused the daemon's credentials: asking again will not change that."""

    code = "proxy_refused"


class UpstreamServerError(UpstreamUnavailable):
    """Arting itself answered 5xx: it made no job, so resubmitting is safe."""

    safe_to_resubmit = True


class UpstreamTimeout(UpstreamError):
    status, code, retryable = 504, "upstream_timeout", True


class UpstreamRejected(UpstreamError):
    """Arting answered with an envelope code other than 100000."""

    code = "upstream_rejected"
    extra_fields = ("upstream_code",)

    def __init__(self, message: str, *, upstream_code: int | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.upstream_code = upstream_code


class ContentRefused(UpstreamRejected):
    code = "content_refused"


class UpstreamInvalid(UpstreamRejected):
    """A provider found the request itself invalid (HTTP 400/422): sending it to another
    provider is not the answer."""

    code = "upstream_invalid_request"


class UpstreamAuthError(UpstreamError):
    """Arting refused our token (expired or invalid); the operator must refresh it.
    A refused create made no job, so it may go out again with another token."""

    code = "upstream_auth"
    safe_to_resubmit = token_fault = True


class UpstreamRateLimited(UpstreamError):
    status, code, retryable = 429, "upstream_rate_limited", True
    safe_to_resubmit = token_fault = True


class JobFailed(UpstreamError):
    """Arting accepted the job and then reported it failed."""

    code = "generation_failed"


class CloudflareBlocked(UpstreamError):
    """A Cloudflare challenge or block page stood where Arting's JSON should be."""

    code = "cloudflare_blocked"
    token_fault = True
    extra_fields = ("kind",)

    def __init__(self, message: str, *, kind: str = "challenge", **kw) -> None:
        super().__init__(message, **kw)
        self.kind = kind


class BadUpstreamResponse(UpstreamError):
    """Arting's answer could not be understood (not JSON, truncated, wrong shape)."""

    code = "bad_upstream_response"
    retryable = True


def error_from_dict(data: dict) -> ArtingError:
    """Rebuild an error from ``to_dict`` output (job records read back from the journal)."""
    cls = globals().get(str(data.get("type")), ArtingError)
    if not (isinstance(cls, type) and issubclass(cls, ArtingError)):
        cls = ArtingError
    err = cls.__new__(cls)
    ArtingError.__init__(err, str(data.get("message", "")), param=data.get("param"),
                         retry_after=data.get("retry_after"))
    for name in cls.extra_fields:
        setattr(err, name, data.get(name))
    return err
