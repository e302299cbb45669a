"""``GET /arting/v1/status``: the daemon's state, and the providers' health."""

from __future__ import annotations

from typing import ClassVar, Literal

from aiohttp import web
from pydantic import Field

from .. import __version__
from ..engine.jobs import JobState
from ..engine.runner import Runner
from ..openapi import operation
from ..state import ENGINE, EVENTS, KEYS, PROVIDER, RETENTION, SETTINGS, WS_CLIENTS
from .http import Answer, Sparse, reply
from .intake import offers
from .ops import TokenView
from .views import Caller, JobCounts, JobError, caller_of


class QueueView(Answer):
    active: int
    queued: int
    max_active: int
    max_queued: int


class LastOutcomes(Answer):
    succeeded_at: float | None
    failed_at: float | None
    failure: JobError | None


class EndedJobs(JobCounts):
    cached: int = Field(description="Of those, answered from the result cache.")


class StoreView(Answer):
    """The image store, kept under ``store_max_gb`` and ``store_max_images``."""

    images: int
    bytes: int
    max_images: int | None
    max_gb: float | None
    removed: int = Field(description="Images removed to keep it under its caps since "
                                     "this daemon started.")


class ProviderView(Sparse):
    """One provider behind the router, as traffic shows it; Arting's adds ``tokens``,
    the others ``base_url`` and ``credentials``, Stability AI's its ``balance``."""

    omitted: ClassVar = frozenset({"tokens", "base_url", "credentials", "balance",
                                   "balance_at"})

    name: str
    label: str
    kind: str
    models: int = Field(description="How many models it offers.")
    prefix: str = Field(description="The prefix of its model ids (may be empty).")
    img2img: bool
    upscale: bool
    free_to_repeat: bool
    max_jobs: int | None = Field(description="Its jobs at once (null: no limit).")
    in_flight: int
    state: Literal["unknown", "ok", "refused", "unreachable", "blocked", "rate-limited",
                   "failing"] = Field(description="What its last exchange said.")
    last_error: str | None
    last_ok: float | None
    last_failure: float | None
    models_read_at: float | None = Field(description="When its catalogue was last read.")
    tokens: list[TokenView] | None = None
    base_url: str | None = None
    credentials: Literal["set", "none"] | None = None
    balance: float | None = Field(None, description="The account's credits, as its "
                                  "`GET /v1/user/balance` last said (Stability AI).")
    balance_at: float | None = Field(None, description="When the balance was read.")


class OperatorEventView(Answer):
    """Something the operator must hear (``operator_webhook_url`` gets it too)."""

    id: str = Field(description="The `webhook-id` its delivery carries.")
    event: Literal["token_refused", "low_balance", "pool_exhausted"]
    token: str | None = Field(description="The token's label (none for `pool_exhausted`).")
    message: str
    at: float


class StatusView(Sparse):
    """The daemon's state, and the providers' health: Arting's ``tokens``, and with
    ``[[providers]]`` each one's (``providers``)."""

    omitted: ClassVar = frozenset({"providers"})

    version: str
    sandbox: bool
    upstream: str
    img2img: bool = Field(description="Whether some provider does image-to-image.")
    upscale: bool = Field(description="Whether some provider upscales.")
    auth_required: bool
    caller: Caller
    tokens: list[TokenView] = Field(description="The `arting` provider's tokens (none "
                                                "without one).")
    providers: list[ProviderView] | None = None
    queue: QueueView
    jobs: EndedJobs = Field(description="Jobs ended since this daemon started.")
    last_outcomes: LastOutcomes
    store: StoreView | None = Field(description="The bounded store (null: unbounded).")
    websocket_clients: int = Field(description="Connections to `/arting/v1/ws`.")
    operator_events: list[OperatorEventView] = Field(
        description="The latest operator events (a token refused, a low balance, no usable "
                    "token), oldest first.")


async def last_outcomes(engine: Runner) -> LastOutcomes:
    """When a job last succeeded and last failed (from the journal, so restarts keep it):
    the only evidence of whether Arting is reachable that costs Arting nothing."""
    succeeded = await engine.last_upstream(JobState.SUCCEEDED)
    failure = await engine.last_upstream(JobState.FAILED)
    return LastOutcomes(
        succeeded_at=succeeded.finished_at if succeeded else None,
        failed_at=failure.finished_at if failure else None,
        failure=JobError(**failure.error.to_dict()) if failure and failure.error else None)


@operation("The daemon's state", "Version, sandbox or live, features, token pool health "
           "(and with `[[providers]]` each provider's), queue, who is calling, and when a "
           "job last succeeded and failed.",
           answers={200: StatusView})
async def status(request: web.Request) -> web.Response:
    settings, engine = request.config_dict[SETTINGS], request.config_dict[ENGINE]
    retention = request.config_dict[RETENTION]
    return reply(StatusView(
        version=__version__, sandbox=settings.sandbox, upstream=settings.base_url,
        img2img=offers(request, "img2img"), upscale=offers(request, "upscale"),
        auth_required=settings.auth_required or request.config_dict[KEYS].in_use,
        caller=caller_of(request), **request.config_dict[PROVIDER].health(),
        queue=QueueView(active=len(engine.active), queued=engine.queued,
                        max_active=settings.max_active_jobs,
                        max_queued=settings.max_queued_jobs),
        jobs=EndedJobs(**engine.counters), last_outcomes=await last_outcomes(engine),
        store=retention and StoreView(**retention.view()),
        websocket_clients=len(request.config_dict[WS_CLIENTS]),
        operator_events=[e.view() for e in request.config_dict[EVENTS].recent]))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/status", status)
